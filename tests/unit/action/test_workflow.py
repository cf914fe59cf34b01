"""Workflow commands and file commands as the runner reads them (actions/runner
`ActionCommand.cs`, `FileCommandManager`)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from action_src.workflow import Workflow, escape_data, escape_property, heredoc
from runkeys.errors import ConfigError, SpecError, SpecProblem
from tests.action.harness import parse_file_commands, unescape


def test_data_escapes_percent_and_line_breaks_in_the_runners_order() -> None:
    assert escape_data("50%\r\nnext") == "50%25%0D%0Anext"
    assert unescape(escape_data("a%0Ab\nc%")) == "a%0Ab\nc%"  # `%` first, so no double meaning
    assert escape_property("a:b,c\n") == "a%3Ab%2Cc%0A"


@pytest.mark.parametrize(
    "value",
    ["plain", "two\nlines", "trailing newline\n", "", "name=value", "x<<EOF", "\n\n"],
)
def test_heredoc_entries_read_back_exactly(value: str) -> None:
    text = heredoc("KEY", value) + heredoc("OTHER", "after")
    assert parse_file_commands(text) == {"KEY": value, "OTHER": "after"}


def test_a_heredoc_delimiter_is_random_and_never_in_the_value() -> None:
    first, second = heredoc("K", "v"), heredoc("K", "v")
    assert first != second
    delimiter = first.split("\n", 1)[0].split("<<", 1)[1]
    assert len(delimiter) >= 32


def test_a_multiline_value_is_masked_in_one_command_line() -> None:
    out = io.StringIO()
    Workflow({}, out).mask("line one\nline two\r\n100%")
    assert out.getvalue() == "::add-mask::line one%0Aline two%0D%0A100%25\n"


def test_blank_forms_are_not_masked() -> None:
    out = io.StringIO()
    Workflow({}, out).mask("  ")
    assert out.getvalue() == ""


def test_a_progress_line_cannot_become_a_command() -> None:
    out = io.StringIO()
    Workflow({}, out).progress("::add-mask::x\nmore")
    assert not out.getvalue().startswith("::")


def test_die_writes_one_annotation_and_the_same_text_to_the_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    out = io.StringIO()
    error = SpecError([SpecProblem("A", "ttl", "too long", "use 1h"), SpecProblem("B", None, "x")])
    assert Workflow({"GITHUB_STEP_SUMMARY": str(summary)}, out).die(error) == 1
    line = out.getvalue().rstrip("\n")
    assert "\n" not in line
    assert line.startswith("::error title=runkeys%3A Invalid key spec::")
    message = unescape(line.split("::", 2)[2])
    assert message.splitlines()[:3] == [
        "The `keys` input has 2 problem(s):",
        "- keys.A.ttl: too long — use 1h",
        "- keys.B: x",
    ]
    assert message in summary.read_text()


def test_withdraw_cuts_delivered_entries_off(tmp_path: Path) -> None:
    env, output = tmp_path / "env", tmp_path / "output"
    env.write_text("EARLIER=1\n")
    workflow = Workflow({"GITHUB_ENV": str(env), "GITHUB_OUTPUT": str(output)}, io.StringIO())
    workflow.deliver_files({"A": "secret"}, {"A": "secret", "keys-json": "[]"})
    assert parse_file_commands(output.read_text())["keys-json"] == "[]"
    workflow.withdraw()
    assert env.read_text() == "EARLIER=1\n"
    assert output.read_text() == ""


def test_an_unwritable_file_is_a_config_error(tmp_path: Path) -> None:
    workflow = Workflow({"GITHUB_ENV": str(tmp_path / "missing" / "env")}, io.StringIO())
    with pytest.raises(ConfigError, match="GITHUB_ENV"):
        workflow.deliver_files({"A": "v"}, {})


def test_the_workflow_masks_first_and_keeps_hidden_forms_out_of_what_it_writes() -> None:
    out = io.StringIO()
    workflow = Workflow({}, out)
    workflow.hide(["at@Fragment-42x", "Fragment-42x"])
    workflow.progress("connecting to Fragment-42x@127.0.0.1")
    workflow.warning("login as u:at@Fragment-42x refused")
    lines = out.getvalue().splitlines()
    masks = [line for line in lines if line.startswith("::add-mask::")]
    assert "::add-mask::at@Fragment-42x" in masks
    assert "::add-mask::Fragment-42x" in masks
    assert "::add-mask::YXRARnJhZ21lbnQtNDJ4" in masks  # base64 of at@Fragment-42x
    assert lines[: len(masks)] == masks
    assert lines[len(masks) :] == [
        "connecting to ***@127.0.0.1",
        "::warning title=runkeys::login as u:*** refused",
    ]
