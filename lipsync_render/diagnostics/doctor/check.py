"""One finding of `lipsync doctor` and how it prints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    """One doctor finding: status is ok, warn or fail; fix says what to do when it is not ok."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def lines(self) -> list[str]:
        text = [f"{self.status:<5} {self.name:<18} {self.detail}"]
        if self.fix and self.status != "ok":
            text.append(f"{'':<5} {'':<18} fix: {self.fix}")
        return text
