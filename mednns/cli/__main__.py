from mednns.cli import main

main()
