"""src/report.py on fabricated sweeps: the table, means, stds and paired t-tests are known.

The expected p-values use the closed form of Student's t with 2 degrees of freedom (3 seeds):
two-sided p = 1 - |t| / sqrt(2 + t^2), with t = mean(d) / (sd(d) / sqrt(3)) of the paired
differences d; none of it goes through scipy or the report's code.
"""
from __future__ import annotations

import json
import math
import re
import statistics

import pandas as pd
import pytest

from src.report import main as report_main
from src.reporting import write_report
from src.reporting.select import select_best
from tests.sweep_fixtures import write_job, write_plan

# test metrics per model and seed (1, 2, 3), chosen so that each column tells something:
# R@10: SPUMR best but not significant; R@20 and N@20: SPUMR best and significant;
# N@10: SPUMR second (underlined), negative improvement, no star.
VALUES = {
    "pop":      {"recall@10": (.05, .05, .05), "recall@20": (.10, .10, .10), "ndcg@10": (.04, .04, .04), "ndcg@20": (.06, .06, .06)},
    "mf":       {"recall@10": (.08, .09, .10), "recall@20": (.15, .16, .17), "ndcg@10": (.20, .21, .22), "ndcg@20": (.22, .23, .24)},
    "lightgcn": {"recall@10": (.12, .13, .11), "recall@20": (.20, .22, .21), "ndcg@10": (.30, .31, .29), "ndcg@20": (.33, .34, .35)},
    "spumr":    {"recall@10": (.15, .10, .20), "recall@20": (.25, .26, .24), "ndcg@10": (.28, .33, .27), "ndcg@20": (.36, .38, .37)},
}

EXPECTED_TABLE = """\
| Model | R@10 | R@20 | N@10 | N@20 | seeds |
|---|---:|---:|---:|---:|---:|
| Pop | 0.0500 ± 0.0000 | 0.1000 ± 0.0000 | 0.0400 ± 0.0000 | 0.0600 ± 0.0000 | 3 |
| MF-BPR | 0.0900 ± 0.0100 | 0.1600 ± 0.0100 | 0.2100 ± 0.0100 | 0.2300 ± 0.0100 | 3 |
| LightGCN | <u>0.1200 ± 0.0100</u> | <u>0.2100 ± 0.0100</u> | **0.3000 ± 0.0100** | <u>0.3400 ± 0.0100</u> | 3 |
| SPUMR | **0.1500 ± 0.0500** | **0.2500 ± 0.0100**\\* | <u>0.2933 ± 0.0321</u> | **0.3700 ± 0.0100**\\* | 3 |
| Improv. | +25.00% | +19.05% | -2.22% | +8.82% | |"""


def p_two_sided_df2(diffs) -> tuple[float, float]:
    t = statistics.mean(diffs) / (statistics.stdev(diffs) / math.sqrt(len(diffs)))
    return t, 1 - abs(t) / math.sqrt(2 + t * t)


@pytest.fixture
def table2_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    plan, num = [], 0
    for model, metrics in VALUES.items():
        for i, seed in enumerate((1, 2, 3)):
            test = {m: v[i] for m, v in metrics.items()}
            write_job(sweep, num, model, seed=seed, test=test, val=test)
            plan.append([f"model={model}", f"seed={seed}"])
            num += 1
    write_job(sweep, num, "mf", seed=4, status="failed")            # a failed job
    plan.append(["model=mf", "seed=4"])
    plan.append(["model=lightgcn", "seed=4"])                       # planned, never started
    write_job(sweep, num + 2, "pop", seed=4, status="incomplete")   # started, no outputs
    plan.append(["model=pop", "seed=4"])
    write_plan(sweep, plan)
    return sweep


def test_table_has_the_expected_means_stds_marks_and_improvements(table2_sweep):
    result = write_report(table2_sweep, figures=False)
    text = (table2_sweep / "table.md").read_text()
    assert EXPECTED_TABLE in text, text
    assert "sample standard deviation (ddof = 1)" in text and "scipy.stats.ttest_rel" in text
    assert result.counts == {"ok": 12, "failed": 1, "missing": 1, "incomplete": 1}
    assert "| ds | SPUMR | 3 | 10.0 | 3.0 | 0.50 |" in text  # run times: epochs, best epoch, s/epoch


def test_paired_t_tests_match_the_closed_form(table2_sweep):
    write_report(table2_sweep, figures=False)
    text = (table2_sweep / "table.md").read_text()
    for metric, header in (("recall@10", "R@10"), ("recall@20", "R@20"), ("ndcg@10", "N@10"), ("ndcg@20", "N@20")):
        # the strongest other row is LightGCN in every column
        diffs = [a - b for a, b in zip(VALUES["spumr"][metric], VALUES["lightgcn"][metric])]
        t, p = p_two_sided_df2(diffs)
        m = re.search(rf"{re.escape(header)}: vs LightGCN, p = ([0-9.e-]+) \(t = (-?[0-9.]+), n = 3\)", text)
        assert m, f"no t-test note for {header} in:\n{text}"
        assert float(m.group(1)) == pytest.approx(p, rel=1e-3)
        assert float(m.group(2)) == pytest.approx(t, abs=1e-3)
    # the stars follow p < 0.05 and a better mean: R@20 (p = 0.0202) and N@20 (p = 0.0351) only
    assert p_two_sided_df2([.05, .04, .03])[1] == pytest.approx(0.0202, abs=1e-4)


def test_summary_lists_every_job_with_its_status(table2_sweep):
    write_report(table2_sweep, figures=False)
    summary = pd.read_csv(table2_sweep / "summary.csv")
    assert len(summary) == 15
    status = dict(zip(summary["num"], summary["status"]))
    assert status[12] == "failed" and status[13] == "missing" and status[14] == "incomplete"
    assert summary.loc[summary["num"] == 12, "error"].item() == "ValueError: boom"
    assert summary.loc[summary["num"] == 13, "model"].item() == "lightgcn"
    ok = summary[summary["status"] == "ok"]
    spumr = ok[ok["model"] == "spumr"].sort_values("seed")
    assert spumr["test/recall@20"].tolist() == pytest.approx([.25, .26, .24])
    assert {"model", "dataset", "seed", "best_epoch", "epochs", "seconds_per_epoch", "val/recall@20"} <= set(summary)
    text = (table2_sweep / "table.md").read_text()
    assert "## Jobs not in the table" in text
    for job in ("12_mf_ds | failed", "| 13 | missing", "14_pop_ds | incomplete"):
        assert job in text


def test_missing_metrics_file_alone_is_not_fatal(tmp_path):
    """A sweep whose only job has no metrics.json (and no plan) still gets its report."""
    write_job(tmp_path, 0, "mf", status="incomplete")
    result = write_report(tmp_path, figures=False)
    assert result.counts == {"incomplete": 1}
    assert "No finished job yet." in (tmp_path / "table.md").read_text()


def test_report_cli(table2_sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert report_main([str(table2_sweep), "--out", str(out), "--no-figures"]) == 0
    assert (out / "summary.csv").is_file() and (out / "table.md").is_file()
    assert "failed" in capsys.readouterr().out


# --------------------------------------------------------------------------- grid selection
def test_grid_selection_uses_validation_never_test(tmp_path):
    """reg 0.1 wins on validation, reg 0.01 on test: 0.1 must be chosen."""
    val = {0.1: (0.30, 0.32), 0.01: (0.28, 0.29)}
    test = {0.1: (0.20, 0.21), 0.01: (0.40, 0.41)}
    num = 0
    for reg in (0.01, 0.1):
        for i, seed in enumerate((1, 2)):
            write_job(tmp_path, num, "mf", seed=seed, overrides=[f"model.net.reg_weight={reg}", f"seed={seed}"],
                      val={"recall@20": val[reg][i]}, test={"recall@20": test[reg][i]})
            num += 1
    write_report(tmp_path, figures=False)
    best = json.loads((tmp_path / "best.json").read_text())
    assert len(best) == 1 and best[0]["model"] == "mf"
    assert best[0]["best"]["setting"] == {"model.net.reg_weight": 0.1}
    assert best[0]["best"]["val/recall@20"] == pytest.approx(0.31)
    assert [r["setting"]["model.net.reg_weight"] for r in best[0]["ranking"]] == [0.1, 0.01]
    assert "**model.net.reg_weight=0.1**" in (tmp_path / "best.md").read_text()
    with pytest.raises(ValueError, match="validation"):
        select_best(pd.DataFrame({"label": ["mf"]}), ["x"], metric="test/recall@20")


# --------------------------------------------------------------------------- figures
def _png(path):
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sensitivity_and_noise_figures(tmp_path):
    lams = (1e-2, 1e-3, 1e-4)
    sens = tmp_path / "sens"
    num = 0
    for kl in lams:
        for u in lams:
            write_job(sens, num, "spumr", overrides=[f"lambda_kl={kl}", f"lambda_u={u}"],
                      config={"lambda_kl": kl, "lambda_u": u},
                      val={"recall@20": 0.2 + kl}, test={"recall@20": 0.1 + kl + u})
            num += 1
    result = write_report(sens)
    assert _png(sens / "sensitivity_ds.png")
    best = json.loads((sens / "best.json").read_text())
    assert best[0]["best"]["setting"]["lambda_kl"] == pytest.approx(1e-2)  # val grows with λ_KL only
    table = (sens / "table.md").read_text()
    assert "| Setting |" in table and "lambda_kl=0.01, lambda_u=0.001" in table
    assert sens / "sensitivity_ds.png" in result.files

    noise = tmp_path / "noise"
    num = 0
    for frac in (0.0, 0.5):
        for model in ("lightgcn", "spumr"):
            unc = ({"gate/text_user_mean": 0.6 - frac / 2, "gate/kg_user_mean": 0.4 + frac / 2,
                    "sigma/text_user_mean": 0.1 + frac, "sigma/kg_user_mean": 0.1} if model == "spumr" else None)
            write_job(noise, num, model, overrides=[f"model={model}", f"noise.fraction={frac}"],
                      config={"noise": {"modality": "text", "kind": "gaussian", "fraction": frac, "scale": 1.0}},
                      test={"recall@20": 0.3 - frac / 10}, uncertainty=unc)
            num += 1
    write_report(noise)
    assert _png(noise / "noise_ds_text_gaussian.png") and _png(noise / "gate_sigma.png")
    summary = pd.read_csv(noise / "summary.csv")
    assert {"noise.fraction", "gate/text_user_mean", "sigma/kg_user_mean"} <= set(summary)
    assert not (noise / "best.json").exists()  # noise levels are conditions, not settings to choose
    assert "## ds · noise.fraction=0.5" in (noise / "table.md").read_text()


def test_ablation_table_rows_are_the_variants_with_spumr_as_reference(tmp_path):
    variants = {"full": "SPUMR", "wo_msg": "w/o MSG", "wo_csg": "w/o CSG", "wo_upa": "w/o UPA"}
    base = {"full": 0.30, "wo_msg": 0.25, "wo_csg": 0.27, "wo_upa": 0.28}
    num = 0
    for key, name in variants.items():
        for seed in (1, 2, 3):
            value = base[key] + seed / 1000 + (seed == 2) * (key == "full") / 1000
            write_job(tmp_path, num, "spumr", seed=seed, overrides=[f"+ablation={key}", f"seed={seed}"],
                      config={"variant": name}, test={m: value for m in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")})
            num += 1
    write_report(tmp_path, figures=False)
    text = (tmp_path / "table.md").read_text()
    first_table = text.split("## ds\n\n", 1)[1].split("\n\n", 1)[0]
    rows = [line.split(" | ")[0].lstrip("| ") for line in first_table.splitlines()][2:]
    assert rows == ["w/o MSG", "w/o CSG", "w/o UPA", "SPUMR", "Improv."]
    # SPUMR vs w/o UPA: differences 0.02, 0.021, 0.02 -> t = 0.0203 / (0.000577 / sqrt 3) = 61, p ~ 0.00027
    t, p = p_two_sided_df2([0.02, 0.021, 0.02])
    assert p < 0.05 and "vs w/o UPA" in text and "**0.3023 ± 0.0012**\\*" in text
    assert "+7.21%" in text  # (0.302333 - 0.282) / 0.282; SPUMR runs 0.301, 0.303, 0.303
    assert not (tmp_path / "best.json").exists()  # variants are rows, not a grid


def test_modality_keys_read_spumr_uncertainty_names():
    from src.reporting.figures import modality_keys
    cols = ["gate/text_user_mean", "gate/text_item_mean", "gate/text_mean", "sigma/kg_item_mean",
            "sigma/kg_mean", "corr/text_user", "gate/kg_mean", "sigma/text_user_mean"]
    assert modality_keys(cols, "gate") == {"text": "gate/text_user_mean", "kg": "gate/kg_mean"}
    assert modality_keys(cols, "sigma") == {"text": "sigma/text_user_mean", "kg": "sigma/kg_mean"}


def test_a_single_run_dir_is_a_one_job_report(tmp_path):
    job = write_job(tmp_path, 0, "mf", test={"recall@20": 0.2})
    result = write_report(job, figures=False)
    assert result.counts == {"ok": 1} and (job / "table.md").is_file()
    assert pd.read_csv(job / "summary.csv")["test/recall@20"].tolist() == [0.2]
