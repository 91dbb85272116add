"""What the app's pages need, one module per use; pages call these and render, nothing more."""
