"""The console's screens: one screen per module, each with its `.tcss` beside it when its
styles are more than a few lines. Screens call services from thread workers and never run
SQL themselves. Shared pieces (safe text, the top bar, the base screen) live in
`screens.widgets`; the navigation registry lives in `polysec_tui.app`."""
