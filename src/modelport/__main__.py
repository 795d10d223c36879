"""``python -m modelport`` runs the command line."""

from modelport.cli import main

if __name__ == "__main__":
    main()
