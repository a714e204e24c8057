from polysec_tui.cli import main

if __name__ == "__main__":  # not when a spawned process (ingest's parser) imports it
    main()
