"""deploy/flash.py on a small but real Raspberry Pi OS-shaped image (MBR, FAT boot partition, root partition):
checksums, read-back, first-boot files on the FAT partition, and refusals. Targets are image files and loop
devices only; the one test that names a real disk (the one holding /) runs with --dry-run and must be refused."""
from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import importlib.util
import lzma
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .helpers import DEPLOY

SCRIPT = DEPLOY / "flash.py"
BOOT_START = 2048  # sectors, as in Raspberry Pi OS images (they start at 8192; smaller keeps the test quick)
BOOT_SECTORS = 16384  # 8 MiB FAT16
IMAGE_MB = 12
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}

# a well-formed ed25519 public key line (its data names its type), of no real key
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhhaXJtaXJyb3ItdGVzdC1rZXktbm90LWEtcmVhbDEh"


def _load_flash():
    spec = importlib.util.spec_from_file_location("hairmirror_flash", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


flash = _load_flash()


def _need(*tools: str) -> None:
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt install mtools dosfstools fdisk)")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """A compressed disk image laid out like Raspberry Pi OS, with its published-style .sha256 beside it."""
    _need("sfdisk", "mkfs.fat", "mcopy", "mtype")
    folder = tmp_path_factory.mktemp("image")
    raw = folder / "raspios-test.img"
    with raw.open("wb") as f:
        f.truncate(IMAGE_MB << 20)
    layout = f"label: dos\nstart={BOOT_START}, size={BOOT_SECTORS}, type=e\nstart={BOOT_START + BOOT_SECTORS}, type=83\n"
    subprocess.run(["sfdisk", "-q", str(raw)], input=layout, text=True, check=True, capture_output=True)
    subprocess.run(["mkfs.fat", "-F", "16", "-s", "1", "-n", "BOOTFS", "--offset", str(BOOT_START), str(raw),
                    str(BOOT_SECTORS // 2)], check=True, capture_output=True)
    cmdline = folder / "cmdline.txt"
    cmdline.write_text("console=tty1 root=PARTUUID=abcd1234-02 rootfstype=ext4 rootwait\n")
    subprocess.run(["mcopy", "-i", f"{raw}@@{BOOT_START * 512}", str(cmdline), "::/cmdline.txt"],
                   check=True, env=MTOOLS_ENV)
    with raw.open("r+b") as f:  # recognisable bytes in the root partition, so a bad copy shows
        f.seek((BOOT_START + BOOT_SECTORS) * 512)
        f.write(os.urandom(1 << 20))
    xz = folder / "raspios-test.img.xz"
    xz.write_bytes(lzma.compress(raw.read_bytes(), preset=0))
    digest = hashlib.sha256(xz.read_bytes()).hexdigest()
    (folder / "raspios-test.img.xz.sha256").write_text(f"{digest}  raspios-test.img.xz\n")
    return xz


def _raw(image: Path) -> bytes:
    return lzma.decompress(image.read_bytes())


def _boot_file(target: Path, name: str) -> str:
    out = subprocess.run(["mtype", "-i", f"{target}@@{BOOT_START * 512}", f"::/{name}"],
                         capture_output=True, text=True, env=MTOOLS_ENV)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_writes_verifies_and_leaves_custom_toml(image, tmp_path):
    (tmp_path / "pw").write_text("correct horse\n")
    (tmp_path / "wifi").write_text("password\n")
    key = f"{KEY} mirror@test"
    (tmp_path / "key.pub").write_text(key + "\n")
    target = tmp_path / "card.img"
    rc = flash.main([str(image), str(target), "--allow-file", "--yes", "--hostname", "mirror-1", "--user", "pi",
                     "--password-file", str(tmp_path / "pw"), "--ssh-key", str(tmp_path / "key.pub"),
                     "--wifi-ssid", "IEEE", "--wifi-password-file", str(tmp_path / "wifi"),
                     "--wifi-country", "gb", "--timezone", "Europe/London", "--keymap", "gb"])
    assert rc == 0

    written, original = target.read_bytes(), _raw(image)
    assert len(written) == len(original)
    root = (BOOT_START + BOOT_SECTORS) * 512
    assert written[:512] == original[:512] and written[root:] == original[root:]  # only the FAT changed
    assert _boot_file(target, "cmdline.txt").startswith("console=tty1 ")

    custom = tomllib.loads(_boot_file(target, "custom.toml"))
    assert custom["config_version"] == 1
    assert custom["system"] == {"hostname": "mirror-1"}
    assert custom["ssh"] == {"enabled": True, "password_authentication": False, "authorized_keys": [key]}
    assert custom["locale"] == {"keymap": "gb", "timezone": "Europe/London"}
    # IEEE 802.11i test vector: passphrase "password", SSID "IEEE".
    assert custom["wlan"] == {"ssid": "IEEE", "hidden": False, "country": "GB", "password_encrypted": True,
                              "password": "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"}
    user = custom["user"]
    assert user["name"] == "pi" and user["password_encrypted"] is True
    salt = user["password"].split("$")[2]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "correct horse"], capture_output=True, text=True)
    assert again.stdout.strip() == user["password"]


def test_legacy_format_writes_userconf_and_ssh(image, tmp_path):
    target = tmp_path / "card.img"
    rc = flash.main([str(image), str(target), "--allow-file", "--yes", "--no-readback", "--bootfs-format", "legacy",
                     "--user", "mirror", "--password-hash", "$6$salt$hash", "--ssh-password-auth"])
    assert rc == 0
    assert _boot_file(target, "userconf.txt") == "mirror:$6$salt$hash\n"
    assert _boot_file(target, "ssh") == ""


def test_legacy_format_refuses_settings_it_cannot_carry(image, tmp_path, capsys):
    rc = flash.main([str(image), str(tmp_path / "card.img"), "--allow-file", "--yes", "--bootfs-format", "legacy",
                     "--hostname", "mirror-1"])
    assert rc == 2 and "--hostname" in capsys.readouterr().err
    assert not (tmp_path / "card.img").exists()


def test_dry_run_checks_and_writes_nothing(image, tmp_path, capsys):
    target = tmp_path / "card.img"
    rc = flash.main([str(image), str(target), "--allow-file", "--dry-run", "--user", "pi", "--password-hash", "$6$s$h"])
    out = capsys.readouterr().out
    assert rc == 0 and "dry run: nothing written" in out
    assert 'password = "<redacted>"' in out and "$6$s$h" not in out
    assert not target.exists()
    rc = flash.main([str(image), str(target), "--allow-file", "--dry-run", "--bootfs-format", "legacy",
                     "--user", "pi", "--password-hash", "$6$s$h"])
    out = capsys.readouterr().out
    assert rc == 0 and "--- userconf.txt\npi:<redacted>\n" in out and "$6$s$h" not in out
    assert not target.exists()


def test_checksum_mismatch_is_refused_before_writing(image, tmp_path, capsys):
    target = tmp_path / "card.img"
    rc = flash.main([str(image), str(target), "--allow-file", "--yes", "--sha256", "0" * 64])
    assert rc == 2 and "does not match" in capsys.readouterr().err
    assert not target.exists()


def test_image_without_a_checksum_needs_skip_checksum(image, tmp_path, capsys):
    bare = tmp_path / "other.img.xz"
    shutil.copy(image, bare)  # no other.img.xz.sha256 beside it
    assert flash.main([str(bare), str(tmp_path / "a.img"), "--allow-file", "--yes"]) == 2
    assert "no checksum" in capsys.readouterr().err
    assert flash.main([str(bare), str(tmp_path / "b.img"), "--allow-file", "--yes", "--skip-checksum",
                       "--no-readback"]) == 0
    assert (tmp_path / "b.img").read_bytes() == _raw(image)


def test_regular_file_is_refused_without_allow_file(image, tmp_path, capsys):
    target = tmp_path / "card.img"
    target.write_bytes(b"keep me")
    assert flash.main([str(image), str(target), "--yes"]) == 2
    assert "not a block device" in capsys.readouterr().err
    assert target.read_bytes() == b"keep me"


def test_character_device_is_refused(image, capsys):
    assert flash.main([str(image), "/dev/null", "--yes", "--allow-file"]) == 2
    assert "not a block device" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("--hostname", "bad_name!", "host name"),
    ("--user", "Root User", "user name"),
    ("--wifi-country", "Britain", "country code"),
])
def test_bad_first_boot_values_are_refused(image, tmp_path, capsys, option, value, message):
    assert flash.main([str(image), str(tmp_path / "c.img"), "--allow-file", "--dry-run", option, value]) == 2
    assert message in capsys.readouterr().err


def test_wifi_values_raspberry_pi_os_would_not_apply_are_refused(image, tmp_path, capsys):
    """Each passed a dry run: a passphrase of non-ASCII characters (WPA counts 8-63 printable ASCII), an SSID over 32
    bytes, an SSID without a country (the radio stays blocked), a country not in ISO 3166, an unknown time zone."""
    (tmp_path / "wifi").write_text("pässwörd-" * 6 + "\n")  # 54 characters, 66 bytes
    base = [str(image), str(tmp_path / "c.img"), "--allow-file", "--dry-run"]
    cases = [(["--wifi-ssid", "Salon", "--wifi-country", "GB", "--wifi-password-file", str(tmp_path / "wifi")],
              "printable ASCII"),
             (["--wifi-ssid", "S" * 33, "--wifi-country", "GB"], "at most 32"),
             (["--wifi-ssid", "Salon"], "needs --wifi-country"),
             (["--timezone", "../../etc/passwd"], "not a time zone")]
    if (flash.ZONEINFO / "iso3166.tab").is_file():
        cases += [(["--wifi-ssid", "Salon", "--wifi-country", "XX"], "ISO 3166"),
                  (["--timezone", "Mars/Olympus"], "not a time zone")]
    for options, message in cases:
        assert flash.main(base + options) == 2, options
        assert message in capsys.readouterr().err, options
    assert flash.main(base + ["--wifi-ssid", "S" * 32, "--wifi-country", "gb", "--timezone", "UTC"]) == 0


def test_first_boot_values_that_would_lock_out_or_break_the_card_are_refused(image, tmp_path, capsys):
    """Each passed a dry run: an ssh key line that is no key (ssh then allows key logins only: the user is locked
    out), a key whose data is not base64 or not of its type, an SSID with a newline (written raw into the Wi-Fi
    connection file) or a space at an end (lost), a keymap that is no keyboard layout."""
    base = [str(image), str(tmp_path / "c.img"), "--allow-file", "--dry-run"]
    keys = {"garbage": "ssh-garbage", "not-base64": "ssh-ed25519 AAAA$$$$ x@y",
             "other-type": KEY.replace("ssh-ed25519", "ssh-rsa") + " x@y"}
    cases = []
    for name, line in keys.items():
        (tmp_path / f"{name}.pub").write_text(line + "\n")
        cases.append((["--ssh-key", str(tmp_path / f"{name}.pub")], "ssh key"))
    cases += [(["--wifi-ssid", "Sa\nlon", "--wifi-country", "GB"], "control character"),
              (["--wifi-ssid", " Salon", "--wifi-country", "GB"], "spaces at an end"),
              (["--keymap", 'zz"; rm -rf /'], "not a keyboard layout")]
    if flash.XKB_RULES.is_file():
        cases.append((["--keymap", "zz"], "not a keyboard layout"))
    for options, message in cases:
        assert flash.main(base + options) == 2, options
        assert message in capsys.readouterr().err, options
    (tmp_path / "good.pub").write_text(f"{KEY} me@laptop\n")
    assert flash.main(base + ["--ssh-key", str(tmp_path / "good.pub"), "--keymap", "gb"]) == 0


def test_an_ssh_key_file_of_comments_is_refused(image, tmp_path, capsys):
    """Was: a file of comment lines added no key, so ssh stayed off on a headless mirror, with exit 0; a key after
    a blank first line was refused as an empty file."""
    (tmp_path / "comments.pub").write_text("# my laptop's key\n\n")
    (tmp_path / "blank-first.pub").write_text(f"\n{KEY} mirror@test\n")
    base = [str(image), str(tmp_path / "c.img"), "--allow-file", "--dry-run", "--ssh-key"]
    assert flash.main(base + [str(tmp_path / "comments.pub")]) == 2
    assert "no key in it" in capsys.readouterr().err
    assert flash.main(base + [str(tmp_path / "blank-first.pub")]) == 0
    assert KEY in capsys.readouterr().out


def test_the_image_itself_as_the_target_is_refused_and_kept(image, tmp_path, capsys):
    """Was: `flash.py x.img x.img --allow-file --yes` truncated the image, wrote 0 bytes, said "read back and
    verified" and exited 0 (a symlink to it as the target too)."""
    raw = tmp_path / "raspios.img"
    raw.write_bytes(_raw(image))
    before = hashlib.sha256(raw.read_bytes()).hexdigest()
    (tmp_path / "link.img").symlink_to(raw)
    for target in (raw, tmp_path / "link.img"):
        assert flash.main([str(raw), str(target), "--allow-file", "--yes", "--skip-checksum"]) == 2
        assert "is the image itself" in capsys.readouterr().err
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == before


def test_data_that_is_not_a_disk_image_is_refused(image, tmp_path, capsys):
    """Was: with no first-boot settings a .bz2 (or any file) was written raw and "verified"; an upper-case .XZ was
    not decompressed."""
    import bz2
    raw = _raw(image)
    (tmp_path / "os.img.bz2").write_bytes(bz2.compress(raw))
    (tmp_path / "notes.img").write_bytes(b"not a disk" * 100)
    (tmp_path / "OS.IMG.XZ").write_bytes(image.read_bytes())
    target = tmp_path / "card.img"
    for name, message in (("os.img.bz2", "bunzip2 it first"), ("notes.img", "not a disk image")):
        assert flash.main([str(tmp_path / name), str(target), "--allow-file", "--yes", "--skip-checksum"]) == 2
        assert message in capsys.readouterr().err
        assert not target.exists()
    assert flash.main([str(tmp_path / "OS.IMG.XZ"), str(target), "--allow-file", "--yes", "--skip-checksum"]) == 0
    assert target.read_bytes() == raw


def test_a_card_smaller_than_the_image_is_refused_before_writing_and_in_a_dry_run(image, tmp_path, monkeypatch,
                                                                                  capsys):
    """Was: the dry run passed, and the real run wrote 4 MiB before it found out (exit 1)."""
    target = tmp_path / "card.img"
    small = flash.Target(target, is_block=False, size=4 << 20)  # a 4 MiB card, without needing a loop device
    monkeypatch.setattr(flash, "check_target", lambda path, allow_file: small)
    assert flash.main([str(image), str(target), "--allow-file", "--dry-run"]) == 2
    assert "larger than the card" in capsys.readouterr().err
    assert flash.main([str(image), str(target), "--allow-file", "--yes"]) == 2
    assert "larger than the card" in capsys.readouterr().err
    assert not target.exists()


@pytest.fixture(scope="module")
def linux_first_image(tmp_path_factory) -> Path:
    """An image whose first partition is Linux (0x83), not FAT: nowhere to put first-boot files."""
    _need("sfdisk")
    raw = tmp_path_factory.mktemp("linux-first") / "not-raspios.img"
    with raw.open("wb") as f:
        f.truncate(4 << 20)
    subprocess.run(["sfdisk", "-q", str(raw)], input="label: dos\nstart=2048, type=83\n", text=True, check=True,
                   capture_output=True)
    return raw


def test_an_image_without_a_fat_first_partition_is_refused_before_writing(linux_first_image, tmp_path, capsys):
    """Was: the dry run passed, and the real run wrote the whole image before it found out (exit 1)."""
    target = tmp_path / "card.img"
    args = [str(linux_first_image), str(target), "--allow-file", "--skip-checksum", "--hostname", "mirror-3"]
    assert flash.main(args + ["--dry-run"]) == 2
    assert "type 0x83, not the FAT boot partition" in capsys.readouterr().err
    assert flash.main(args + ["--yes"]) == 2
    assert "not the FAT boot partition" in capsys.readouterr().err
    assert not target.exists()
    # without first-boot files the image is only copied, and its partitions are its own business
    assert flash.main(args[:4] + ["--yes", "--no-readback"]) == 0 and target.stat().st_size == 4 << 20


def test_the_decompressed_size_is_known_before_writing(image, tmp_path):
    raw = _raw(image)
    assert flash.xz_size(image) == flash.image_size(image) == len(raw)  # from the .xz index, nothing decompressed
    two = tmp_path / "two.img.xz"  # two concatenated streams with stream padding, as xz allows
    two.write_bytes(lzma.compress(b"a" * 1000) + bytes(8) + lzma.compress(b"b" * 5000))
    assert flash.xz_size(two) == 6000
    gz = tmp_path / "image.img.gz"
    gz.write_bytes(gzip.compress(raw[:3 << 20], compresslevel=1))
    assert flash.image_size(gz) == 3 << 20  # counted: a .gz keeps its size only modulo 4 GiB
    junk = tmp_path / "junk.img.xz"
    junk.write_bytes(b"not xz at all" * 10)
    assert flash.xz_size(junk) is None
    with pytest.raises(flash.Refused, match="junk.img.xz"):
        flash.image_size(junk)


def _system_disk() -> Path | None:
    """The block device holding /, from /proc/self/mountinfo."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            source = line.split(" - ", 1)[1].split()[1]
            with contextlib.suppress(OSError):
                if stat.S_ISBLK(os.stat(source).st_mode):
                    return Path(source)
    return None


def test_the_disk_holding_root_is_refused(image, capsys):
    disk = _system_disk()
    if disk is None:
        pytest.skip("/ is not on a block device here (overlay or tmpfs root)")
    if (Path(f"/sys/class/block/{disk.name}/partition")).exists():  # refuse the whole disk, not only the partition
        disk = Path("/dev") / Path(os.path.realpath(f"/sys/class/block/{disk.name}/..")).name
    assert flash.main([str(image), str(disk), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "in use" in err and "mounted at /" in err


def test_help_and_usage_exit_codes():
    ok = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "--dry-run" in ok.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert bad.returncode == 2 and "required" in bad.stderr


# ---- loop devices: real block devices backed by files -------------------------------------------------------

@contextlib.contextmanager
def _loop(backing: Path, partitions: bool = False):
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("loop devices need root and losetup")
    args = ["losetup", "--find", "--show"] + (["--partscan"] if partitions else []) + [str(backing)]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"no loop device available: {out.stderr.strip()}")
    device = Path(out.stdout.strip())
    if partitions and not Path(f"/sys/class/block/{device.name}p1").exists() and shutil.which("partx"):
        subprocess.run(["partx", "--add", str(device)], capture_output=True)  # where --partscan is not honoured
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", str(device)], capture_output=True)


def test_loop_device_is_written_and_read_back(image, tmp_path):
    backing = tmp_path / "card.bin"
    with backing.open("wb") as f:
        f.truncate(16 << 20)
    with _loop(backing) as device:
        assert flash.main([str(image), str(device), "--yes", "--hostname", "mirror-2"]) == 0
        assert "mirror-2" in _boot_file(device, "custom.toml")
    raw = _raw(image)
    root = (BOOT_START + BOOT_SECTORS) * 512
    assert backing.read_bytes()[root:len(raw)] == raw[root:]


def test_the_card_is_locked_from_udev_until_its_first_boot_files_are_written(image, tmp_path, monkeypatch):
    """udev probes a card when a writer closes it, and a desktop then mounts its partitions: mcopy wrote under a
    mounted FAT. The whole device stays flock'ed (systemd's block device locking, which udev honours) from the
    write to the last boot file, and is free afterwards."""
    backing = tmp_path / "card.bin"
    with backing.open("wb") as f:
        f.truncate(16 << 20)
    real_write_boot_files, seen = flash.write_boot_files, []

    def locked_now(path: Path) -> bool:
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # what udev tries before it probes
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def checking(path, files):
        seen.append(locked_now(path))
        real_write_boot_files(path, files)
    monkeypatch.setattr(flash, "write_boot_files", checking)
    with _loop(backing) as device:
        assert flash.main([str(image), str(device), "--yes", "--hostname", "mirror-3"]) == 0
        assert seen == [True] and not locked_now(device)
        assert "mirror-3" in _boot_file(device, "custom.toml")


def test_loop_device_that_is_too_small_is_refused_before_writing(image, tmp_path, capsys):
    backing = tmp_path / "small.bin"
    with backing.open("wb") as f:
        f.truncate(4 << 20)
    with _loop(backing) as device:
        assert flash.main([str(image), str(device), "--dry-run"]) == 2  # the dry run finds it too
        assert "larger than the card" in capsys.readouterr().err
        assert flash.main([str(image), str(device), "--yes", "--no-readback"]) == 2
        assert "larger than the card" in capsys.readouterr().err
    assert backing.read_bytes() == bytes(4 << 20), "nothing may be written to a card that is too small"


@pytest.fixture
def partitioned_loop(tmp_path):
    """A loop device with one ext4 partition (a Pi's root file system type) and a node for that partition."""
    _need("sfdisk", "mkfs.ext4")
    backing = tmp_path / "used.bin"
    with backing.open("wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["sfdisk", "-q", str(backing)], input="label: dos\nstart=2048, type=83\n", text=True, check=True,
                   capture_output=True)
    with _loop(backing, partitions=True) as device:
        part = Path(f"{device}p1")
        sys_dev = Path(f"/sys/class/block/{device.name}p1/dev")
        if not part.exists() and sys_dev.exists():  # no udev here: make the node the kernel announced
            part = tmp_path / part.name
            major, minor = (int(n) for n in sys_dev.read_text().split(":"))
            os.mknod(part, 0o600 | stat.S_IFBLK, os.makedev(major, minor))
        if not part.exists():
            pytest.skip(f"{part} did not appear (no partition scanning here)")
        subprocess.run(["mkfs.ext4", "-q", str(part)], check=True, capture_output=True)
        yield backing, device, part


def test_partition_is_refused(image, partitioned_loop, capsys):
    _, _, part = partitioned_loop
    assert flash.main([str(image), str(part), "--dry-run"]) == 2
    assert "a partition; give the whole card" in capsys.readouterr().err


def test_device_with_a_mounted_partition_is_refused(image, partitioned_loop, tmp_path, capsys):
    backing, device, part = partitioned_loop
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", str(part), str(mnt)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount here: {mounted.stderr.strip()}")
    try:
        head = backing.read_bytes()[:1 << 20]  # MBR and gap before the partition: the mounted fs never writes there
        assert flash.main([str(image), str(device), "--yes"]) == 2  # not even a dry run: refused all the same
        assert f"mounted at {mnt}" in capsys.readouterr().err
        assert backing.read_bytes()[:1 << 20] == head
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# --- without the disk tools: an MBR written by hand, no first-boot files (nothing for mtools to do) --------------

@pytest.fixture
def bare_image(tmp_path) -> tuple[Path, bytes]:
    """A 2 MiB raw disk image with an MBR whose first partition is FAT (0x0c at sector 2048), as .img.xz with a
    sha256sum file beside it that names another file first."""
    mbr = bytearray(512)
    mbr[446 + 4] = 0x0C
    mbr[446 + 8:446 + 12] = (2048).to_bytes(4, "little")
    mbr[510:512] = b"\x55\xaa"
    raw = bytes(mbr) + os.urandom((2 << 20) - 512)
    xz = tmp_path / "bare.img.xz"
    xz.write_bytes(lzma.compress(raw, preset=0))
    digest = hashlib.sha256(xz.read_bytes()).hexdigest()
    (tmp_path / "bare.img.xz.sha256").write_text(f"{'0' * 64}  other.img.xz\n{digest} *bare.img.xz\n")
    return xz, raw


def test_the_checksum_line_is_the_image_s_own_and_a_checksum_is_64_hex_digits(bare_image, tmp_path, capsys):
    xz, _ = bare_image
    assert flash.expected_sha256(xz, None, None) == hashlib.sha256(xz.read_bytes()).hexdigest()
    assert flash.main([str(xz), str(tmp_path / "c.img"), "--allow-file", "--dry-run"]) == 0
    assert flash.main([str(xz), str(tmp_path / "c.img"), "--allow-file", "--dry-run", "--sha256", "a" * 32]) == 2
    assert "not 64 hex digits" in capsys.readouterr().err


def test_a_file_target_is_written_and_read_back(bare_image, tmp_path, monkeypatch, capsys):
    """The bytes written are the image's; a read-back that differs, or fewer bytes than the image holds, fail."""
    xz, raw = bare_image
    target = tmp_path / "card.img"
    assert flash.main([str(xz), str(target), "--allow-file", "--yes"]) == 0
    assert target.read_bytes() == raw and "read back and verified" in capsys.readouterr().out
    monkeypatch.setattr(flash, "read_back", lambda target, length: "0" * 64)
    assert flash.main([str(xz), str(target), "--allow-file", "--yes"]) == 1
    assert "read-back sha256" in capsys.readouterr().err
    monkeypatch.setattr(flash, "image_size", lambda image: len(raw) + 512)
    assert flash.main([str(xz), str(target), "--allow-file", "--yes", "--no-readback"]) == 1
    assert f"wrote {len(raw)} bytes, the image holds {len(raw) + 512}" in capsys.readouterr().err


def test_a_card_exactly_the_image_s_size_is_enough(bare_image, tmp_path, monkeypatch, capsys):
    xz, raw = bare_image
    target = tmp_path / "card.img"
    for size, code in ((len(raw), 0), (len(raw) - 1, 2)):
        monkeypatch.setattr(flash, "check_target", lambda path, allow_file, s=size: flash.Target(target, False, s))
        assert flash.main([str(xz), str(target), "--allow-file", "--dry-run"]) == code, size
    assert "larger than the card" in capsys.readouterr().err


def test_first_boot_values_by_hand():
    """The IEEE 802.11i vector for the PSK; WPA passphrases of 8 to 63 characters; root is never the first user;
    TOML strings with quotes, backslashes and control characters read back as written."""
    assert flash.wpa_psk("IEEE", "password") == "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
    assert len(flash.wpa_psk("IEEE", "p" * 63)) == 64
    for bad in ("p" * 7, "p" * 64):
        with pytest.raises(flash.Refused, match="8 to 63"):
            flash.wpa_psk("IEEE", bad)
    with pytest.raises(flash.Refused, match="root"):
        flash.FirstBoot(user="root").validate()
    tricky = 'Caf\u00e9 "quoted" back\\slash\ttab\x01'
    assert tomllib.loads(f"v = {flash.toml_string(tricky)}")["v"] == tricky
