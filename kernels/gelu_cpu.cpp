// placeholder, replaced by implementation
