from dbbackup.cli import main

main()
