from polysec_tui.cli import main

main()
