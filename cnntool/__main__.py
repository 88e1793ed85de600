from cnntool.cli import main

main()
