"""Chat interfaces: the web UI (``python -m jakiro.application.webui``), the terminal chat
(``python -m jakiro.application.cli``) and the web UI screenshot (``python -m jakiro.application.screenshot``)."""
