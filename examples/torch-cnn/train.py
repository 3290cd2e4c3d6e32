"""Train the CNN with SGD and momentum on cross-entropy, as the tutorial does; save model.pth."""

import time
from pathlib import Path

import torch
import yaml
from data import load_data, split
from model import Net, to_images
from torch import nn, optim

HERE = Path(__file__).parent


def main() -> None:
    params = yaml.safe_load((HERE / "params.yaml").read_text())["train"]
    # The same seed gives the same weights: initialisation and batch order both come from it.
    torch.manual_seed(params["seed"])
    torch.use_deterministic_algorithms(True)
    x, y = load_data()
    train_idx, _ = split(len(y), params["test_size"], params["seed"])
    images = to_images([x[i] for i in train_idx])
    labels = torch.tensor([y[i] for i in train_idx])
    net = Net()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=params["lr"], momentum=params["momentum"])
    order = torch.Generator().manual_seed(params["seed"])
    t0 = time.perf_counter()
    for epoch in range(params["epochs"]):
        total = 0.0
        perm = torch.randperm(len(labels), generator=order)
        for batch in perm.split(params["batch_size"]):
            optimizer.zero_grad()
            loss = criterion(net(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch + 1}: loss {total / len(labels):.4f}")
    torch.save(net.state_dict(), HERE / "model.pth")
    print(f"trained on {len(labels)} samples in {time.perf_counter() - t0:.1f}s -> model.pth")


if __name__ == "__main__":
    main()
