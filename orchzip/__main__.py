from orchzip.cli import main

raise SystemExit(main())
