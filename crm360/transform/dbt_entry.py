"""dbt's own command line, with its vars read from a file:

    python -m crm360.transform.dbt_entry [--vars-file FILE] DBT_ARGS ...

crm360 runs dbt as a subprocess (crm360.transform.dbt) and used to hand it its vars, the validated
segments among them, as ``--vars JSON`` on the command line. The kernel refuses an
argument longer than 128 KiB (MAX_ARG_STRLEN; all of them and the environment together:
ARG_MAX), so a few hundred long segment filters failed the run with "Argument list too
long: dbt". An env var has the same limit, and dbt's Jinja cannot read a file. So this
entry point reads the file in dbt's process and starts dbt's command line there, with
``--vars`` added to the arguments it parses: exactly what the ``dbt`` script does, minus
the exec that limits the length. Imports nothing else of crm360: it is dbt's process.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--vars-file"]:
        if len(args) < 2:
            sys.exit("crm360.transform.dbt_entry: --vars-file needs a file")
        args = [*args[2:], "--vars", Path(args[1]).read_text(encoding="utf-8")]
    # dbt reads sys.argv itself (which options the user gave), so it is the command line it parses
    sys.argv = ["dbt", *args]
    from dbt.cli.main import cli

    sys.exit(cli())


if __name__ == "__main__":
    main()
