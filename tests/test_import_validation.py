"""The door of `init`: seed and golden files are read and checked before anything is written or trained.

The files are what a support team exports: ticket texts labelled billing / bug / feature, with the extra columns
a help desk adds, and the mistakes a spreadsheet or a hand edit leaves (an unclosed quote, a stray comma, a bad
JSON line, a Latin-1 byte).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from datawheel.cli.main import app
from datawheel.errors import ImportDataError
from datawheel.importers import check_seed, load_labelled
from datawheel.tasks import get_task
from datawheel.wheel.init import init_workspace

LABELS = ("billing", "bug", "feature")
TICKETS = {
    "billing": ["I was charged twice for the March invoice", "Please refund the annual plan, I cancelled",
                "Why did my card get declined at renewal", "The invoice shows the wrong VAT number",
                "Can I switch from monthly to yearly billing", "Payment failed but the money left my account",
                "Need a receipt for the last three payments", "Upgrade price is higher than the pricing page"],
    "bug": ["The export button does nothing in Firefox", "App crashes when I open a shared folder",
            "Search returns results from deleted projects", "Dark mode makes the error text unreadable",
            "Uploading a PNG over 5 MB hangs forever", "Notifications arrive twice on Android",
            "Login loops back to the sign-in page", "Calendar shows events one hour late after DST"],
    "feature": ["Please add an API for bulk user import", "Could you support SSO with Okta",
                "Would love keyboard shortcuts for the editor", "Add a Gantt view to projects",
                "Allow exporting reports as Excel files", "Let admins set a default time zone",
                "Support two-factor login with hardware keys", "Make it possible to archive old workspaces"],
}


def tickets(per_label: dict[str, int] | None = None, suffix: str = "") -> list[dict[str, str]]:
    per_label = per_label or dict.fromkeys(LABELS, 8)
    return [{"text": text + suffix, "label": label} for label, n in per_label.items() for text in TICKETS[label][:n]]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "golden.jsonl", tickets(dict.fromkeys(LABELS, 4), suffix=" (golden)"))


def init(tmp_path: Path, seed: Path, golden: Path, **options):
    return init_workspace(tmp_path / "ws", task="text-classification", labels=LABELS, seed_data=seed,
                          eval_data=golden, epochs=1, **options)


# -- every label in the seed set, enough of each ------------------------------------------------------------


def test_a_label_with_no_seed_rows_is_refused_by_name_and_leaves_nothing(tmp_path, golden):
    seed = write_csv(tmp_path / "seed.csv", tickets({"billing": 8, "bug": 8}))
    with pytest.raises(ImportDataError) as exc:
        init(tmp_path, seed, golden)
    message = str(exc.value)
    assert "seed.csv" in message and "feature (0)" in message and "at least 5" in message
    assert "billing" not in message and "bug (" not in message  # only the labels that are short
    assert not (tmp_path / "ws").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_two_rows_in_all_names_every_short_label_with_its_count(tmp_path, golden):
    seed = write_csv(tmp_path / "seed.csv", tickets({"billing": 1, "bug": 1}))
    with pytest.raises(ImportDataError, match=r"billing \(1\), bug \(1\), feature \(0\)"):
        init(tmp_path, seed, golden)


def test_the_minimum_is_an_option(tmp_path, golden):
    seed = write_csv(tmp_path / "seed.csv", tickets({"billing": 3, "bug": 3, "feature": 3}))
    with pytest.raises(ImportDataError, match=r"at least 5"):
        init(tmp_path, seed, golden)
    ws = init(tmp_path, seed, golden, min_examples=3)
    assert len(ws.seed()) == 9
    ws.store.close()


def test_seed_rows_also_in_the_golden_set_do_not_count(tmp_path):
    """What trains is the seed minus the golden items: a label kept only by rows the golden set takes is short."""
    rows = tickets()
    seed = write_csv(tmp_path / "seed.csv", rows)
    golden = write_jsonl(tmp_path / "golden.jsonl", [r for r in rows if r["label"] == "feature"][:4]
                         + tickets({"billing": 2, "bug": 2}, suffix="?"))
    with pytest.raises(ImportDataError, match=r"feature \(4\).*golden set do not count"):
        init(tmp_path, seed, golden)


def test_text_generation_needs_a_minimum_of_rows(tmp_path):
    """No labels there: the seed set needs that many rows in all (a CSV of prompt,response reads too)."""
    task = get_task("text-generation")
    path = tmp_path / "seed.csv"
    path.write_text("prompt,response\n" + "".join(f"Summarise ticket {i},A billing question.\n" for i in range(3)),
                    encoding="utf-8")
    seed = load_labelled(path, task, ())
    with pytest.raises(ImportDataError, match=r"seed\.csv: 3 usable row\(s\); the seed set needs at least 5"):
        check_seed(seed, task, (), path)
    check_seed(seed, task, (), path, min_examples=3)


# -- columns and labels the import cannot use are said ----------------------------------------------------


def test_ignored_columns_are_named_in_a_warning_and_slice_columns_are_not(tmp_path, golden):
    rows = [{"ticket_id": f"T-{1000 + i}", "text": r["text"], "label": r["label"], "priority": "high",
             "meta.channel": "email"} for i, r in enumerate(tickets())]
    seed = write_csv(tmp_path / "seed.csv", rows)
    warnings: list[str] = []
    ws = init(tmp_path, seed, golden, warn=warnings.append)
    ws.store.close()
    ignored = [w for w in warnings if "ignored column" in w]
    assert len(ignored) == 1 and "seed.csv" in ignored[0]
    assert "'priority'" in ignored[0] and "'ticket_id'" in ignored[0] and "meta.channel" not in ignored[0]
    assert "T-1000" not in " ".join(warnings)  # names the columns, never a value


def test_a_typo_in_the_label_column_is_still_an_error_not_a_warning(tmp_path, golden):
    rows = [{"text": r["text"], "lable": r["label"]} for r in tickets()]
    with pytest.raises(ImportDataError, match=r"seed\.csv:1: header must name a 'label' column"):
        init(tmp_path, write_csv(tmp_path / "seed.csv", rows), golden)


def test_labels_missing_from_the_golden_set_are_warned_about(tmp_path):
    seed = write_csv(tmp_path / "seed.csv", tickets())
    golden = write_jsonl(tmp_path / "golden.jsonl", tickets({"billing": 4, "bug": 4}, suffix="?"))
    warnings: list[str] = []
    ws = init(tmp_path, seed, golden, warn=warnings.append)
    ws.store.close()
    assert [w for w in warnings if "no golden examples of label(s) feature" in w and "golden.jsonl" in w]


# -- broken files: the line, and what is wrong -------------------------------------------------------------


def broken_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def good_lines() -> list[str]:
    """The tickets as a spreadsheet exports them: a text is quoted only when it holds a comma."""
    return [f'"{r["text"]}",{r["label"]}' if "," in r["text"] else f'{r["text"]},{r["label"]}' for r in tickets()]


def test_an_unclosed_quote_running_to_the_end_is_reported_where_it_starts(tmp_path, golden):
    lines = ["text,label", *good_lines()[:6], '"Refund please, my card ref is 4111-secret,billing',
             *good_lines()[6:]]
    seed = broken_csv(tmp_path / "seed.csv", lines)
    with pytest.raises(ImportDataError) as exc:
        init(tmp_path, seed, golden)
    message = str(exc.value)
    assert message == (f"{seed}:8: unclosed quote (the field starting on this line runs to the end of the file)")
    assert "missing label" not in message and "4111" not in message


def test_an_unclosed_quote_swallowing_lines_until_the_next_quote_names_both_lines(tmp_path, golden):
    lines = ["text,label", *good_lines()[:3], '"Invoice is wrong,billing', "Export broken,bug",
             '"Crash, then a logout",bug', *good_lines()[3:]]
    seed = broken_csv(tmp_path / "seed.csv", lines)
    with pytest.raises(ImportDataError, match=rf"{seed}:5: unclosed quote \(the quoted field starting on this "
                                              r"line runs on to line 7\)"):
        init(tmp_path, seed, golden)


def test_a_stray_comma_and_a_short_row_give_the_field_counts(tmp_path, golden):
    lines = ["text,label", *good_lines()[:4], "Please add SSO, and SAML,feature", *good_lines()[4:]]
    with pytest.raises(ImportDataError, match=r"seed\.csv:6: 3 fields where the header names 2; a comma inside"):
        init(tmp_path, broken_csv(tmp_path / "seed.csv", lines), golden)
    lines = ["text,label", *good_lines()[:2], "Just some text without a label", *good_lines()[2:]]
    with pytest.raises(ImportDataError, match=r"seed\.csv:4: 1 field where the header names 2$"):
        init(tmp_path, broken_csv(tmp_path / "seed.csv", lines), golden)


def test_quoted_text_over_several_lines_and_a_bom_are_fine(tmp_path, golden):
    """A ticket body spanning lines is legitimate CSV; so is the byte-order mark Excel writes."""
    lines = ["text,label", '"Charged twice.\nSecond charge on the 3rd.\nPlease refund.",billing', *good_lines()]
    seed = tmp_path / "seed.csv"
    seed.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode("utf-8"))
    rows = load_labelled(seed, get_task("text-classification"), LABELS)
    assert len(rows) == 25 and rows.labels[0] == "billing"


def test_invalid_json_names_the_file_the_line_and_the_cause(tmp_path, golden):
    rows = [json.dumps(r) for r in tickets()]
    rows[2] = '{"text": "Refund the March invoice" "label": "billing"}'  # a comma lost in a hand edit
    seed = tmp_path / "seed.jsonl"
    seed.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(ImportDataError) as exc:
        init(tmp_path, seed, golden)
    assert str(exc.value) == f"{seed}:3: not valid JSON (Expecting ',' delimiter at column 37)"


def test_a_byte_that_is_not_utf8_is_reported_by_line(tmp_path, golden):
    lines = ["text,label", *good_lines()]
    data = ("\n".join(lines) + "\n").encode("utf-8").replace(b"Firefox", b"Firef\xf6x")  # Latin-1, line 10
    seed = tmp_path / "seed.csv"
    seed.write_bytes(data)
    with pytest.raises(ImportDataError, match=rf"^{seed}:10: not UTF-8 text$"):
        init(tmp_path, seed, golden)


# -- the CLI: checked before any progress bar, warnings said ---------------------------------------------


def test_cli_init_fails_on_a_bad_seed_before_any_progress_bar(tmp_path, golden):
    seed = write_csv(tmp_path / "seed.csv", tickets({"billing": 8, "bug": 2}))
    res = CliRunner().invoke(app, ["init", str(tmp_path / "ws"), "--task", "text-classification",
                                   "--labels", ",".join(LABELS), "--seed-data", str(seed), "--eval-data", str(golden)])
    out = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "error:" in out and "bug (2), feature (0)" in out
    assert "training" not in out and "None" not in out and "Traceback" not in out


def test_cli_init_prints_the_ignored_columns_and_trains(tmp_path, golden):
    rows = [{"text": r["text"], "label": r["label"], "assignee": "kim"} for r in tickets()]
    seed = write_csv(tmp_path / "seed.csv", rows)
    res = CliRunner().invoke(app, ["init", str(tmp_path / "ws"), "--task", "text-classification",
                                   "--labels", ",".join(LABELS), "--seed-data", str(seed), "--eval-data", str(golden),
                                   "--min-examples", "8"])
    out = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "warning:" in out and "ignored column(s) 'assignee'" in out and "model v1 is champion" in out
    assert "None" not in out
