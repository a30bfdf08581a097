"""`faas serve`'s cluster flags: parsed (deploy/ is written against them),
refused until the server takes them, so a cluster manifest never silently
starts a whole runtime where it asked for one role."""

from __future__ import annotations

import pytest

from gateway import cli
from gateway.cli_args import build_parser


def test_the_cluster_flags_parse() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--role",
            "invoker",
            "--queue",
            "nats://nats:4222",
            "--cluster-token",
            "t",
            "--advertise",
            "10.0.0.5:8081",
            "--workers",
            "2",
        ]
    )
    assert (args.role, args.queue, args.cluster_token, args.advertise, args.workers) == (
        "invoker",
        "nats://nats:4222",
        "t",
        "10.0.0.5:8081",
        2,
    )


@pytest.mark.parametrize("flags", [["--role", "nobody"], ["--workers", "0"]])
def test_bad_values_are_refused_by_the_parser(flags: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", *flags])


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--role", "gateway"], "--role"),
        (["--role", "all", "--queue", "nats://nats:4222"], "--queue"),
        (["--advertise", "10.0.0.5:8081", "--workers", "2"], "--advertise, --workers"),
    ],
)
def test_serve_refuses_them_before_starting(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", *flags]) == 2
    assert capsys.readouterr().err.startswith(f"error: {named}: not supported by this server yet")
