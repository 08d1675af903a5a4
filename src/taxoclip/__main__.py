from taxoclip.cli import main

raise SystemExit(main())
