"""``make_labeller(settings)``: the labeller a campaign's ``labeller:`` section asks for."""

from __future__ import annotations

from typing import Any, Optional

from .base import Labeller
from .settings import LabellerSettings, settings_from_dict


def make_labeller(settings: Any, *, base_dir: Optional[str] = None) -> Labeller:
    """Build the labeller of ``settings`` (a mapping, the campaign's pydantic ``labeller`` section or
    :class:`LabellerSettings`); relative paths are taken from ``base_dir``. Raises UserError for
    bad settings and for a kind whose program or package is missing."""
    from ..errors import UserError

    s: LabellerSettings = settings_from_dict(settings, base_dir=base_dir)
    if s.kind == "ase":
        from .ase_labeller import AseLabeller, import_object

        try:
            if not s.isolate:   # an isolated calculator is imported by the child (its env, PYTHONPATH)
                import_object(s.calculator)
        except (ImportError, ValueError) as error:
            raise UserError(f"labeller.calculator = {s.calculator!r}: cannot import it ({error})") from None
        return AseLabeller(s)
    if s.kind == "chgnet":
        from .ase_labeller import ChgnetLabeller

        try:
            import chgnet  # noqa: F401
        except ImportError:
            raise UserError("labeller kind 'chgnet' needs the chgnet package: "
                            "pip install '.[chgnet]' (or pip install chgnet)") from None
        return ChgnetLabeller(s)
    if s.kind == "cp2k":
        from .ase_labeller import Cp2kLabeller, find_cp2k_shell

        if find_cp2k_shell(s.command) is None:
            raise UserError("labeller kind 'cp2k' needs cp2k_shell (or cp2k.psmp) on PATH, or "
                            "labeller.command such as 'mpirun -n 8 cp2k.psmp -s' "
                            "(Debian/Ubuntu: apt-get install cp2k cp2k-data)")
        return Cp2kLabeller(s)
    if s.kind == "command":
        from .command import CommandLabeller

        return CommandLabeller(s)
    raise UserError(f"labeller.kind = {s.kind!r}: unknown")  # pragma: no cover - checked before
