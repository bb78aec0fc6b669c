"""The one list of kinds: a name -> factory registry per backend family (camera, segmenter, sink, recolour mode).

A backend registers itself under its kind and declares, as class attributes, what the rest of the daemon reads:
- `Settings`: a dataclass of its own config keys, each made with `setting()` (default, one-line meaning, allowed
  values or range). The config section holds them flat, as config files always had them ([camera] url = "...").
- capabilities, e.g. a camera's `has_preview` / `can_overlay`, a recolourer's `uses_second_colour`, a sink's
  `camera_needs` (the camera capabilities it needs): shared code reads these, never a kind's name.
- `check_config(cfg)` (optional classmethod): what the start would trip over in its settings, raised as a
  ValueError naming the key; `--validate-config` runs it for the kinds in use.
Config validation, `--help`, `--print-default-config` and the page all derive their lists from here.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def setting(default: Any, help: str = "", *, choices: Sequence | Registry | None = None,
            range: tuple[float, float] | None = None) -> Any:
    """A declared config key: a dataclass field with its default, its meaning (printed by --print-default-config)
    and optionally its allowed values (a tuple, or a Registry: its kinds) or its inclusive (low, high) range."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "range": range})


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory
        return add

    def names(self) -> list[str]:
        return sorted(self._factories)

    def having(self, capability: str) -> list[str]:
        """The kinds whose backend declares `capability` (a class attribute) true."""
        return [name for name in self.names() if getattr(self._factories[name], capability, False)]

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def create(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)
