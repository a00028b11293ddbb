"""One widget per pane; each renders a Window handed to it and redraws only when its text changed."""
