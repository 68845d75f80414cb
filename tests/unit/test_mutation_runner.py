"""`make mutation`'s record: mutmut's `results --all true` lines, counted per module."""

from __future__ import annotations

import pytest

from onnx_lambda_tools.mutation import MODULES, main, parse_results, summarize, table

# As mutmut 3.8 prints them: `print(f"    {key}: {status}")` for every mutant of every mutated file.
RESULTS = """\
    onnx_lambda.auth.x_bearer_token__mutmut_1: killed
    onnx_lambda.auth.x_bearer_token__mutmut_2: survived
    onnx_lambda.auth.xǁJwtVerifierǁverify__mutmut_3: killed
    onnx_lambda.protocol.x__split__mutmut_5: timeout
    onnx_lambda.protocol.x__split__mutmut_6: no tests
    onnx_lambda.protocol.x__split__mutmut_7: caught by type check
"""


def test_results_are_counted_per_module_with_every_status() -> None:
    summary = summarize(parse_results("Generating mutants\n" + RESULTS), ["auth", "protocol", "handler"])
    auth, protocol, handler = (summary["counts"][module] for module in ("auth", "protocol", "handler"))
    assert (auth["killed"], auth["survived"], auth["total"]) == (2, 1, 3)
    assert (protocol["timeout"], protocol["no tests"], protocol["caught by type check"], protocol["total"]) == (
        1,
        1,
        1,
        3,
    )
    assert handler["total"] == 0
    assert summary["not_killed"]["auth"] == ["onnx_lambda.auth.x_bearer_token__mutmut_2"]
    assert len(summary["not_killed"]["protocol"]) == 3


def test_the_table_has_a_row_per_module() -> None:
    summary = summarize(parse_results(RESULTS), ["auth"])
    assert table(summary["counts"]).splitlines()[-1] == "| auth.py | 2 | 1 | 0 | 0 | 3 |"


@pytest.mark.parametrize("argv", [["model_store"], ["--label", "no spaces please"]])
def test_unknown_modules_and_odd_labels_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2


def test_the_modules_are_the_request_path() -> None:
    assert MODULES == ("auth", "protocol", "inference", "handler")
