"""monitor: a package-health bot for Python and Django teams."""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/monitor-bot/monitor"
USER_AGENT = f"monitor/{__version__} (+{PROJECT_URL})"
