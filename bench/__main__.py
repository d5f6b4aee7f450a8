import sys

from bench.run import main

if sys.argv[1:2] == ["citizens"]:  # python -m bench citizens ...: the citizen search (bench/citizens.py)
    from bench.citizens import main as citizens
    sys.exit(citizens(sys.argv[2:]))
sys.exit(main())
