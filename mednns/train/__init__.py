"""Training and scoring networks: the supernet's sandwich-rule trainer, the loop for static networks,
closed-form heads, losses, MedMNIST's metrics, batching and the device."""
