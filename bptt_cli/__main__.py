from bptt_cli.cli import main

main()
