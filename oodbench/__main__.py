from oodbench.cli import main

raise SystemExit(main())
