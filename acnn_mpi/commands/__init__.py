"""One module per subcommand of ``python -m acnn_mpi``: HELP, add_arguments(parser), run(args)."""
