from smoothness.cli import main

raise SystemExit(main())
