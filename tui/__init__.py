"""The Textual UI: one widget per pane, rendering only what the store and the verdict hold."""
