"""Shared by the CLI tests: run a command that must fail cleanly."""
from fastmdm.cli import main


def failing(argv, capsys, code):
    """Run the CLI on bad input: it returns `code` and says why on one line of stderr."""
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err
