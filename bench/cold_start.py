"""`lepton-ci --version` cold start, against the 0.3 s budget and a bare `python -c pass`."""

import sys

from _timing import best_of, lepton_cli, report, run


def main() -> None:
    cli = lepton_cli()
    bare = best_of(10, lambda: run([sys.executable, "-c", "pass"]))
    version = best_of(10, lambda: run([*cli, "--version"]))
    help_ = best_of(10, lambda: run([*cli, "--help"]))
    print(
        f"python -c pass: {bare:.3f} s; lepton-ci --version: {version:.3f} s "
        f"({version / bare:.2f}x bare python)"
    )
    report("lepton-ci --version", version, 0.3)
    report("lepton-ci --help", help_, 0.3)


if __name__ == "__main__":
    main()
