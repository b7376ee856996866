"""Run options: flags, ``LOADGEN_*`` environment variables and ``--config`` files, turned into a ``RunConfig``.

Precedence for every option: command line > ``LOADGEN_*`` environment variable (and ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY``) > ``--config FILE.toml`` > default. Defaults live on the config dataclasses only
(``loadgen.config``); :data:`FIELD_OF` says which field each option sets, and the help shows that field's default.
Values from the environment, a config file or an experiment's tables are coerced with the same converter as the
flag's (its argparse ``type``). Options become a ``RunConfig`` once (the CLI's flags, sweep's run flags, an
experiment's tables); past that point code takes the frozen config and derives variants of it with
``dataclasses.replace`` (a cell's rate, cv, seed, server, folder), never by writing flags again.

The package, by what each file owns::

    flags.py     the parser table: every flag, its help and the config field it sets (FIELD_OF), DEFAULTS taken
                 from the dataclasses, secret options masked (mask_secrets)
    sources.py   the other sources: LOADGEN_* environment, --config files, experiment tables, each coerced with
                 the flag's own converter, laid over one another in precedence (resolve_options)
    build.py     resolved options -> the frozen RunConfig (build_config), every value checked there
"""

from loadgen.options.build import build_config
from loadgen.options.flags import (
    DEFAULTS,
    ENV_ALIASES,
    FIELD_OF,
    SECRET_DESTS,
    OptionParser,
    build_parser,
    mask_secrets,
)
from loadgen.options.sources import (
    bounded,
    merge_options,
    options_from_argv,
    read_config_file,
    resolve_options,
    table_options,
)

__all__ = [
    "DEFAULTS",
    "ENV_ALIASES",
    "FIELD_OF",
    "SECRET_DESTS",
    "OptionParser",
    "bounded",
    "build_config",
    "build_parser",
    "mask_secrets",
    "merge_options",
    "options_from_argv",
    "read_config_file",
    "resolve_options",
    "table_options",
]
