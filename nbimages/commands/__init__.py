"""The one command layer: the `%image` subcommands, shared by the magics, the `nbimages` CLI
and the notebook replay (nbimages build NOTEBOOK, verify, handout). No IPython here.

parsing.py  the grammar: CommandTable, Command, Invocation, prepare(), pairs(), UsageError
steps.py    the build-step subcommands (from, file, pip, env, ..., build, dockerfile, recipe)
verbs.py    the full %image table (TABLE): look, registry, engine and notebook subcommands
summaries.py  the summaries of the subcommands the CLI offers, for a fast `nbimages --help`
"""
