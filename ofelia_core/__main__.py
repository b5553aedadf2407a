from ofelia_core.cli import main

main()
