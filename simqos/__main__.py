from simqos.cli import main

main()
