"""What training-side monitoring hooks cost, as a share of step time (from monitoring_costs.json)."""

from __future__ import annotations

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Healthy, Severity, check
from healthkit.core.workspace import Workspace

from ._common import number, q

OVER = CodeDoc(
    "monitoring.over-budget",
    "warning",
    "Monitoring hooks cost more than their share of step time",
    what="The training-side hooks (status writes, evaluation bookkeeping, GPU queries) take more than 5% (warning) or 10% "
    "(critical) of training time, as recorded in monitoring_costs.json.",
    why="Monitoring that slows training is how a 3-hour hang starts: an expensive hook on every step.",
    fix="Log less often (logging_steps), drop the slow hook, or raise its interval; each hook's cost is listed.",
)


@check("monitoring", title="Monitoring cost", codes=[OVER], tags=["training"])
def monitoring_check(ws: Workspace) -> CheckOutput:
    mc = ws.monitoring_costs
    if not mc.exists:
        return CheckOutput(notes=["no monitoring_costs.json yet"])
    if not mc.is_object:
        return CheckOutput(
            unknown=f"monitoring_costs.json unusable: {mc.problem.message if mc.problem else 'not an object'}"
        )
    tr = mc.data.get("training")
    if not isinstance(tr, dict):
        return CheckOutput(notes=["monitoring_costs.json has no training section (no trainer hook costs recorded)"])
    hooks = got if isinstance(got := tr.get("hooks"), dict) else {}
    train_time = number(tr.get("train_time_s"))
    share = number(tr.get("hook_share"))
    hook_total = sum(number(h.get("total_s")) or 0.0 for h in hooks.values() if isinstance(h, dict))
    if train_time and hooks:  # without per-hook costs the recorded share is all there is
        share = hook_total / train_time
    if share is None:
        return CheckOutput(notes=["monitoring_costs.json records no hook share"])
    th = ws.settings.thresholds
    timeouts = sum(int(number(h.get("timeouts")) or 0) for h in hooks.values() if isinstance(h, dict))
    if train_time is not None and train_time < th.monitoring_min_train_seconds and not timeouts:
        # A few seconds of training are dominated by one-off writes: the share says nothing yet.
        return CheckOutput(
            notes=[
                f"only {train_time:.1f}s of training recorded; hook costs are judged after "
                f"{th.monitoring_min_train_seconds:g}s (hooks so far: {share:.1%})"
            ]
        )
    ranked = sorted(
        ((n, h) for n, h in hooks.items() if isinstance(h, dict)), key=lambda x: -(number(x[1].get("total_s")) or 0)
    )
    lines = [
        f"{n}: {number(h.get('total_s')) or 0:.3f}s over {h.get('calls', '?')} calls (max {number(h.get('max_s')) or 0:.3f}s"
        + (f", {h['timeouts']} cut off" if h.get("timeouts") else "")
        + ")"
        for n, h in ranked
    ]
    if share > th.monitoring_warn_share:
        sev = Severity.CRITICAL if share > th.monitoring_critical_share else Severity.WARNING
        return CheckOutput(
            findings=[
                Finding(
                    code=OVER.code,
                    severity=sev,
                    title="Monitoring is slowing training",
                    problem=[
                        f"Training-side hooks took {share:.1%} of training time (budget {th.monitoring_warn_share:.0%}, critical above {th.monitoring_critical_share:.0%})"
                    ]
                    + lines[:5],
                    impact=["Every step is slower by the hooks' share; a hung hook can stall the run"],
                    evidence=[
                        Evidence(f"jq '.training' {q(ws, mc.path)}", "\n".join(lines) or f"hook_share: {share:.4f}")
                    ],
                    recommendations=[
                        f"Make the costliest hook ({ranked[0][0] if ranked else '?'}) cheaper or less frequent"
                    ],
                    urgency="short-term",
                    data={"share": share, "hooks": hooks},
                )
            ]
        )
    return CheckOutput(
        healthy=[Healthy("Monitoring is cheap", [f"hooks take {share:.2%} of training time"] + lines[:3])]
    )
