"""The act step's ordering rule: decisions that give resources back go first."""

from __future__ import annotations

from optimus.api.spec import JobMeta
from optimus.api.status import AllocationStatus, TrainingJobStatus
from optimus.kube.controller import _frees
from optimus.kube.plan import Decision

META = JobMeta("ml", "j", "u", 1, "")


def _decision(action: str, old: tuple[int, int] | None, new: tuple[int, int] | None) -> Decision:
    def allocation(counts: tuple[int, int] | None, generation: int) -> AllocationStatus | None:
        return AllocationStatus(counts[0], counts[1], generation) if counts else None
    return Decision(META, TrainingJobStatus(allocation=allocation(new, 2)), None,
                    action,  # type: ignore[arg-type]
                    previous=allocation(old, 1))


def test_shrinks_and_deletions_free_starts_and_grows_take() -> None:
    assert _frees(_decision("delete", (1, 3), (1, 3)))
    assert _frees(_decision("roll", (2, 3), (1, 2)))
    assert _frees(_decision("roll", (1, 2), (1, 2)))  # a restart of the same size
    assert not _frees(_decision("roll", (1, 2), (1, 3)))
    assert not _frees(_decision("roll", (2, 1), (1, 2)))  # fewer PS but more workers
    assert not _frees(_decision("roll", None, (1, 1)))  # a new job
    assert not _frees(_decision("none", (1, 2), (1, 2)))
