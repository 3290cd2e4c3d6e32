from lepton_ci.cli import main

raise SystemExit(main())
