"""The subcommand table shared by the %image magics, the nbimages CLI and notebook replay."""
