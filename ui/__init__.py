"""The app's tabs: one module per tab, each with plain handlers and one builder (Gradio lives here and in app.py only)."""
