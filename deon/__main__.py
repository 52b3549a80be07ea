from deon.cli import main

main()
