from taskapi.ops.cli import main

main()
