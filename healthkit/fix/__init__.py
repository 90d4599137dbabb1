"""The remediation half: fixes with a declared safety, shown as plans before anything changes.

`run_fix(path, FixOptions(level=Safety.SAFE))` is what `healthkit fix` calls. See
docs/architecture.md "Fix safety" for what safe and unsafe promise; `plan.FIXES` maps the FixRef
ids the checks emit to the code that plans and applies them.
"""

from __future__ import annotations

from healthkit.fix.engine import FixError, FixOptions, FixRun, run_fix
from healthkit.fix.plan import Outcome, Plan, Safety

__all__ = ["FixError", "FixOptions", "FixRun", "Outcome", "Plan", "Safety", "run_fix"]
