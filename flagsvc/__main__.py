from flagsvc.cli.server import main

main()
