"""A module's tests are found by its name (docs/development.md): a file `tests/**/test_[<topic>_]<module>[_<topic>].py`,
or, for a module that is tested through behaviour named otherwise, the test files this index lists for it.

The index is kept honest both ways: a new module needs a test file named after it or an entry here, and an entry
names only modules and test files that exist.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("healthkit", "checks", "trainer")

TESTED_IN: dict[str, tuple[str, ...]] = {
    "healthkit/_moved.py": ("tests/test_stable_surface.py",),
    "healthkit/_version.py": (
        "tests/reports/test_loss_chart.py",
        "tests/test_architecture.py",
        "tests/test_packaging.py",
    ),
    "healthkit/commands.py": ("tests/test_quickargs.py", "tests/test_cli.py"),
    "healthkit/console.py": ("tests/test_cli.py", "tests/test_quickargs.py"),
    "healthkit/contract/config_model.py": (
        "tests/test_schemalite.py",
        "tests/trainer/test_units.py",
        "tests/trainer/test_chat_lora_units.py",
    ),
    "healthkit/contract/configschema.py": ("tests/test_schemalite.py",),
    "healthkit/contract/docvalues.py": (
        "tests/checks/test_drift.py",
        "tests/test_mutation_rules.py",
        "tests/test_parser_properties.py",
    ),
    "healthkit/contract/events.py": (
        "tests/test_shared_pieces.py",
        "tests/test_slurm_check.py",
        "tests/trainer/test_slurm_e2e.py",
    ),
    "healthkit/contract/modelinfo.py": ("tests/trainer/test_real_data_units.py",),
    "healthkit/contract/monitoring_costs.py": (
        "tests/checks/test_monitor_gpu_costs.py",
        "tests/test_runner_registry.py",
    ),
    "healthkit/contract/retry_checkpoints.py": (
        "tests/trainer/test_real_data.py",
        "tests/fix/test_init_over_a_run.py",
        "tests/trainer/test_real_data_units.py",
    ),
    "healthkit/contract/settings.py": ("tests/test_cli.py", "tests/test_detect.py", "tests/test_parser_properties.py"),
    "healthkit/contract/states.py": ("tests/test_stable_surface.py", "tests/reports/test_fmt_prom.py"),
    "healthkit/contract/wsid.py": (
        "tests/checks/test_monitor_gpu_costs.py",
        "tests/test_shared_pieces.py",
        "tests/trainer/test_two_monitors.py",
    ),
    "healthkit/core/findings.py": (
        "tests/fix/test_registry.py",
        "tests/reports/test_fmt_junit.py",
        "tests/reports/test_html_report.py",
    ),
    "healthkit/core/ownership.py": ("tests/test_daemon_check.py", "tests/trainer/test_safe_fix_e2e.py"),
    "healthkit/core/selectors.py": ("tests/test_runner_registry.py", "tests/test_cli.py"),
    "healthkit/core/workspace.py": (
        "tests/test_architecture.py",
        "tests/test_checkpoints_check.py",
        "tests/checks/test_disk.py",
    ),
    "healthkit/demo.py": (
        "tests/fix/test_full_disk.py",
        "tests/fix/test_more_fixes.py",
        "tests/reports/test_example_reports.py",
    ),
    "healthkit/fix/daemon_adapters.py": ("tests/fix/test_registry.py",),
    "healthkit/fix/engine.py": (
        "tests/test_architecture.py",
        "tests/fix/test_daemon_fix.py",
        "tests/fix/test_units.py",
    ),
    "healthkit/fix/fileops.py": (
        "tests/fix/test_units.py",
        "tests/test_mutation_rules.py",
        "tests/fix/test_full_disk.py",
    ),
    "healthkit/fix/fixes_checkpoints.py": (
        "tests/test_checkpoints_check.py",
        "tests/fix/test_full_disk.py",
        "tests/fix/test_units.py",
    ),
    "healthkit/fix/fixes_config.py": ("tests/fix/test_units.py", "tests/checks/test_validation.py"),
    "healthkit/fix/fixes_daemon.py": (
        "tests/fix/test_example_fix.py",
        "tests/fix/test_daemon_fix.py",
        "tests/fix/test_more_fixes.py",
    ),
    "healthkit/fix/fixes_docs.py": (
        "tests/fix/test_units.py",
        "tests/fix/test_lock_and_crash.py",
        "tests/checks/test_drift.py",
    ),
    "healthkit/fix/fixes_queue.py": (
        "tests/fix/test_registry.py",
        "tests/checks/test_queue.py",
        "tests/fix/test_units.py",
    ),
    "healthkit/fix/fixes_slurm.py": ("tests/test_slurm_check.py", "tests/trainer/test_slurm_e2e.py"),
    "healthkit/fix/journal.py": (
        "tests/fix/test_daemon_fix.py",
        "tests/fix/test_example_fix.py",
        "tests/fix/test_full_disk.py",
    ),
    "healthkit/fix/kill_points.py": ("tests/fix/test_lock_and_crash.py", "tests/test_mutation_edges.py"),
    "healthkit/fix/plan.py": (
        "tests/fix/test_more_fixes.py",
        "tests/checks/test_disk.py",
        "tests/fix/test_daemon_fix.py",
    ),
    "healthkit/fix/start_after.py": ("tests/trainer/test_safe_fix_e2e.py",),
    "healthkit/formats/base.py": ("tests/formats/test_hf_rule_edges.py",),
    "healthkit/formats/deepspeed.py": ("tests/formats/test_hf_variants.py",),
    "healthkit/formats/fsdp.py": ("tests/formats/test_hf_variants.py",),
    "healthkit/formats/hf_checkpoints.py": (
        "tests/formats/test_hf_rule_edges.py",
        "tests/test_checkpoint_completeness.py",
    ),
    "healthkit/formats/logs.py": ("tests/formats/test_lightning_runs.py", "tests/formats/test_accelerate_runs.py"),
    "healthkit/formats/safepickle.py": ("tests/formats/test_safe_reading.py",),
    "healthkit/formats/tensorboard.py": ("tests/checks/test_trainsignal.py",),
    "healthkit/formats/torchzip.py": ("tests/formats/test_safe_reading.py",),
    "healthkit/oneaudit.py": ("tests/test_deadlines.py",),
    "healthkit/reporting/fleetpage.py": ("tests/reports/test_fleet_cmd.py",),
    "healthkit/reporting/htmlindex.py": ("tests/reports/test_cron_history.py",),
    "healthkit/reporting/render/json_report.py": (
        "tests/test_report_coherence.py",
        "tests/reports/test_example_reports.py",
    ),
    "healthkit/reporting/render/markdown.py": ("tests/test_daemon_check.py", "tests/test_example_machine.py"),
    "healthkit/reporting/svgchart.py": ("tests/reports/test_html_report.py",),
    "healthkit/scheduled/backoff.py": ("tests/test_unattended.py", "tests/trainer/test_heal_e2e.py"),
    "healthkit/scheduled/fleetdeadline.py": ("tests/test_deadlines.py",),
    "healthkit/scheduled/notify.py": ("tests/test_unattended.py",),
    "healthkit/scheduled/notify_send.py": ("tests/test_unattended.py",),
    "healthkit/scheduled/state_files.py": ("tests/test_unattended.py",),
    "healthkit/system/deadline.py": ("tests/test_deadlines.py",),
    "healthkit/system/fsutil.py": (
        "tests/test_architecture.py",
        "tests/test_bounded_reads.py",
        "tests/test_checkpoints_check.py",
    ),
    "healthkit/system/jsonio.py": ("tests/reports/test_one_rule.py",),
    "healthkit/system/procs.py": (
        "tests/trainer/test_units.py",
        "tests/fix/test_daemon_fix.py",
        "tests/fix/test_example_fix.py",
    ),
    "healthkit/system/safetext.py": ("tests/test_harmless_output.py",),
    "healthkit/system/shellcmd.py": ("tests/test_shared_pieces.py",),
    "healthkit/system/slurmq.py": ("tests/test_slurm_check.py",),
    "checks/_common.py": ("tests/test_example_machine.py",),
    "checks/aside.py": ("tests/test_safety_rules.py", "tests/trainer/test_safe_fix_e2e.py"),
    "checks/files.py": ("tests/test_bounded_reads.py",),
    "checks/hook_cost.py": (
        "tests/checks/test_monitor_gpu_costs.py",
        "tests/reports/test_alert_rules.py",
        "tests/test_runner_registry.py",
    ),
    "checks/notify.py": ("tests/test_unattended.py",),
    "checks/ports.py": (
        "tests/checks/test_monitor_gpu_costs.py",
        "tests/trainer/test_two_monitors.py",
        "tests/reports/test_alert_rules.py",
    ),
    "trainer/callbacks.py": ("tests/trainer/test_inprocess.py",),
    "trainer/commands.py": ("tests/trainer/test_units.py",),
    "trainer/control.py": ("tests/trainer/test_units.py",),
    "trainer/datacheck.py": ("tests/trainer/test_real_data.py",),
    "trainer/diskspace.py": ("tests/trainer/test_disk_full.py",),
    "trainer/health_server.py": ("tests/trainer/test_units.py", "tests/trainer/test_dashboard.py"),
    "trainer/hooks.py": ("tests/trainer/test_units.py",),
    "trainer/launch.py": ("tests/trainer/test_safe_fix_e2e.py", "tests/trainer/test_units.py"),
    "trainer/layout.py": ("tests/trainer/test_units.py", "tests/test_lease.py", "tests/trainer/test_chaos.py"),
    "trainer/modeling.py": ("tests/trainer/test_inprocess.py", "tests/trainer/test_chat_lora_units.py"),
    "trainer/pidfile.py": ("tests/trainer/test_units.py", "tests/trainer/test_disk_full.py"),
    "trainer/runevents.py": ("tests/trainer/test_goodput_e2e.py",),
    "trainer/scaffold.py": (
        "tests/trainer/test_preflight_cli.py",
        "tests/trainer/test_real_data_units.py",
        "tests/test_trust.py",
    ),
    "trainer/state.py": ("tests/trainer/test_units.py",),
    "trainer/statustext.py": ("tests/trainer/test_status_truth.py", "tests/test_mistakes.py"),
    "trainer/supervise.py": (
        "tests/trainer/test_daemon_e2e.py",
        "tests/trainer/test_supervised_truth.py",
        "tests/trainer/test_units.py",
    ),
    "trainer/tiny.py": (
        "tests/trainer/test_chat_lora_e2e.py",
        "tests/trainer/test_inprocess.py",
        "tests/trainer/test_plain_trainer_detect.py",
    ),
    "trainer/train_file.py": (
        "tests/test_daemon_check.py",
        "tests/trainer/test_guard.py",
        "tests/trainer/test_safe_fix_e2e.py",
    ),
    "trainer/training_args.py": ("tests/trainer/test_preflight_cli.py", "tests/trainer/test_chat_lora_units.py"),
}


def modules() -> list[str]:
    return sorted(
        p.relative_to(REPO).as_posix()
        for top in SOURCES
        for p in (REPO / top).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    )


def named_test(module: str) -> str | None:
    stem = re.escape(Path(module).stem.lstrip("_"))
    for t in sorted((REPO / "tests").rglob("test_*.py")):
        if re.fullmatch(rf"test_(\w+_)?{stem}(_\w+)?\.py", t.name):
            return t.relative_to(REPO).as_posix()
    return None


def test_every_module_has_a_test_file_named_after_it_or_an_entry_in_the_index():
    missing = [m for m in modules() if named_test(m) is None and not TESTED_IN.get(m)]
    assert missing == [], "add tests/**/test_<module>.py, or list the test files that test it in TESTED_IN"


def test_the_index_lists_only_modules_without_a_named_test_and_test_files_that_exist():
    assert sorted(set(TESTED_IN) - set(modules())) == []
    assert sorted(m for m in TESTED_IN if named_test(m)) == []
    assert sorted(t for ts in TESTED_IN.values() for t in ts if not (REPO / t).is_file()) == []


def test_a_name_is_matched_as_a_whole_word():
    assert named_test("healthkit/reporting/render/junit.py") == "tests/reports/test_fmt_junit.py"
    assert named_test("healthkit/no_such_module.py") is None
