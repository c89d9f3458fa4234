// Placeholder so the target builds; delete when the target has real files.
