"""make e2e-deploy, step 6: the three files bench.yml fetched from the booted container are whole results
(hairmirror-bench timed both models, the stage profile has a frame time, the paced daemon ran its model).
Usage: check_bench.py DIR (the fetched DIR/{bench,stages,paced}.json); exit 1 with the reason otherwise."""
import json
import pathlib
import sys


def main(out: pathlib.Path) -> str:
    (machine,) = json.loads((out / "bench.json").read_text())["machines"]
    timed = sorted({r["model"] for r in machine["results"] if r["status"] == "ok"})
    stages = json.loads((out / "stages.json").read_text())
    paced = json.loads((out / "paced.json").read_text())
    if len(timed) != 2 or not stages["frame_time"]["pi"]["ratio"] > 0 or len(paced) != 1:
        raise ValueError(f"incomplete: timed {timed}, stage frame time {stages['frame_time']}, paced {len(paced)}")
    return (f"{machine['label']!r}: {', '.join(timed)} timed; stage profile of {pathlib.Path(stages['model']).name}; "
            f"paced daemon of {pathlib.Path(paced[0]['model']).name}")


if __name__ == "__main__":
    try:
        print("   fetched:", main(pathlib.Path(sys.argv[1])))
    except (OSError, ValueError, KeyError, IndexError) as e:
        sys.exit(f"check_bench: {e}")
