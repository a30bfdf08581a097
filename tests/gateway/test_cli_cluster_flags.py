"""`faas serve`'s cluster flags, as deploy/ writes them (their passing to
the server: tests/gateway/test_cli_unit.py)."""

from __future__ import annotations

import pytest

from gateway.cli_args import build_parser


def test_the_cluster_flags_parse() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--role",
            "invoker",
            "--cluster-token",
            "t",
            "--advertise",
            "10.0.0.5:8081",
            "--workers",
            "2",
        ]
    )
    assert (args.role, args.cluster_token, args.advertise, args.workers) == (
        "invoker",
        "t",
        "10.0.0.5:8081",
        2,
    )


@pytest.mark.parametrize("flags", [["--role", "nobody"], ["--workers", "0"]])
def test_bad_values_are_refused_by_the_parser(flags: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", *flags])
