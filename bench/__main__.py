import sys

from bench.run import main

if sys.argv[1:2] == ["citizens"]:  # python -m bench citizens ...: the citizen search (bench/citizens.py)
    from bench.citizens import main as citizens
    sys.exit(citizens(sys.argv[2:]))
if sys.argv[1:2] == ["replay"]:  # python -m bench replay ...: a mapping version replayed over the history
    from bench.replay import main as replay
    sys.exit(replay(sys.argv[2:]))
if sys.argv[1:2] == ["compare"]:  # python -m bench compare BASE -- ...: two versions in pairs (bench/compare.py)
    from bench.compare import main as compare
    sys.exit(compare(sys.argv[2:]))
sys.exit(main())
