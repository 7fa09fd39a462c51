"""The model-defining lessons of SCENARIOS.md, pasted as tutorials write them.

Each program runs twice: in GradLab's interpreter (``run_program``) and as plain
Python with torch. Torch is the oracle: both runs print the same text, and the
facts each lesson teaches (the weight near 3, only the new layer learning, ...)
are checked on the plain run's numbers as printed by the interpreted one.
"""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from gradlab.program import ProgramResult, run_program

HEADER = """import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
"""

LINEAR_REGRESSION = (
    HEADER
    + """
torch.manual_seed(42)
x = torch.randn(100, 1)
y = 3 * x + 2 + torch.randn(100, 1)


class LinearRegression(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        return self.linear(x)


model = LinearRegression()
criterion = nn.MSELoss()
optimizer = optim.SGD(model.parameters(), lr=0.1)

losses = []
for epoch in range(100):
    pred = model(x)
    loss = criterion(pred, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())

w = model.linear.weight.item()
b = model.linear.bias.item()
with torch.no_grad():
    at_4 = model(torch.tensor([[4.0]])).item()
print(f"w={w:.4f} b={b:.4f} at4={at_4:.4f} first={losses[0]:.4f} last={losses[-1]:.4f}")
"""
)

THREE_POINTS = (
    HEADER
    + """
x = torch.tensor([[1.0], [2.0], [3.0]])
y = torch.tensor([[2.0], [4.0], [6.0]])


class Model(nn.Module):
    def __init__(self):
        super(Model, self).__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        y_pred = self.linear(x)
        return y_pred


model = Model()
criterion = nn.MSELoss(reduction="sum")
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for epoch in range(500):
    y_pred = model(x)
    loss = criterion(y_pred, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"w={model.linear.weight.item():.4f} b={model.linear.bias.item():.4f}")
none = nn.MSELoss(reduction="none")(model(x), y)
print(tuple(none.shape))
"""
)

SMALL_CNN = (
    HEADER
    + """
torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        # 1 input image channel, 6 output channels, 3x3 square convolution kernel
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(16 * 6 * 6, 120)  # 6*6 from image dimension
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


net = Net()
params = list(net.parameters())
print(len(params), params[0].size())
input = torch.randn(1, 1, 32, 32)
out = net(input)
print(tuple(out.shape))
target = torch.tensor([3])
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
optimizer.zero_grad()
loss = criterion(out, target)
print(f"{loss.item():.6f}")
print(loss.grad_fn.name())
loss.backward()
print(f"{net.conv1.bias.grad.abs().sum().item():.6f}")
optimizer.step()
"""
)

TRAINING_STEP = (
    HEADER
    + """
torch.manual_seed(0)
model = nn.Linear(3, 1)
x = torch.randn(8, 3)
y = torch.randn(8, 1)
loss_fn = nn.MSELoss()
optimizer = optim.SGD(model.parameters(), lr=0.1)

# without zero_grad the gradients add up
loss_fn(model(x), y).backward()
first = model.weight.grad.clone()
loss_fn(model(x), y).backward()
doubled = torch.allclose(model.weight.grad, 2 * first)
print("doubled:", doubled)

optimizer.zero_grad()
loss = loss_fn(model(x), y)
loss.backward()
same = torch.allclose(model.weight.grad, first)
optimizer.step()
print("after zero_grad:", same, model.weight.grad is not None)
"""
)

OPTIMIZERS = (
    HEADER
    + """
torch.manual_seed(0)
x = torch.randn(16, 2)
y = x @ torch.tensor([[1.5], [-2.0]]) + 0.5


def train(make, steps=20):
    torch.manual_seed(1)
    model = nn.Linear(2, 1)
    optimizer = make(model.parameters())
    loss_fn = nn.MSELoss()
    for step in range(steps):
        def closure():
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        optimizer.step(closure)
    return loss_fn(model(x), y).item()


results = {
    "sgd": train(lambda p: optim.SGD(p, lr=0.1)),
    "momentum": train(lambda p: optim.SGD(p, lr=0.1, momentum=0.9)),
    "weight_decay": train(lambda p: optim.SGD(p, lr=0.1, weight_decay=0.01)),
    "adam": train(lambda p: optim.Adam(p, lr=0.1)),
    "adagrad": train(lambda p: optim.Adagrad(p, lr=0.5)),
    "adamax": train(lambda p: optim.Adamax(p, lr=0.1)),
    "asgd": train(lambda p: optim.ASGD(p, lr=0.1)),
    "rmsprop": train(lambda p: optim.RMSprop(p, lr=0.01)),
    "rprop": train(lambda p: optim.Rprop(p, lr=0.01)),
    "lbfgs": train(lambda p: optim.LBFGS(p, lr=1, max_iter=5), steps=3),
}
for name, final in results.items():
    print(f"{name} {final:.6f}")
"""
)

COSINE_SCHEDULE = (
    HEADER
    + """
model = nn.Linear(2, 1)
optimizer = optim.SGD(model.parameters(), lr=0.1)
scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
lrs = []
for epoch in range(10):
    optimizer.zero_grad()
    loss = model(torch.ones(1, 2)).sum()
    loss.backward()
    optimizer.step()
    scheduler.step()
    lrs.append(scheduler.get_last_lr()[0])
print(" ".join(f"{lr:.5f}" for lr in [optimizer.param_groups[0]["lr"]]), len(lrs))
print([round(lr, 6) for lr in lrs])
"""
)

FINE_TUNING = (
    HEADER
    + """
torch.manual_seed(0)


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.features(x))


model = Backbone()
for param in model.parameters():
    param.requires_grad = False
model.fc = nn.Linear(8, 2)  # the new head: its parameters require grad

optimizer = optim.SGD(model.fc.parameters(), lr=0.1)
x = torch.randn(5, 4)
labels = torch.tensor([0, 1, 1, 0, 1])
loss = nn.CrossEntropyLoss()(model(x), labels)
optimizer.zero_grad()
loss.backward()
optimizer.step()
for name, param in model.named_parameters():
    print(name, param.requires_grad, param.grad is not None)
"""
)

CUSTOM_DATASET = (
    HEADER
    + """
from torch.utils.data import Dataset, DataLoader


class SquaresDataset(Dataset):
    \"\"\"Pairs (x, x**2) for x = 0..n-1.\"\"\"

    def __init__(self, n, transform=None):
        self.x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
        self.y = self.x ** 2
        self.transform = transform

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        sample = self.x[idx], self.y[idx]
        if self.transform:
            sample = self.transform(sample)
        return sample


def scale(sample):
    x, y = sample
    return x / 10, y / 100


torch.manual_seed(0)
dataset = SquaresDataset(10, transform=scale)
print(len(dataset), dataset[3])
loader = DataLoader(dataset, batch_size=4, shuffle=True)
sizes = []
seen = []
for xb, yb in loader:
    sizes.append(xb.shape[0])
    seen.extend((xb.squeeze(1) * 10).round().long().tolist())
print(sizes, sorted(seen))
images, labels = next(iter(loader))
print(tuple(images.shape), tuple(labels.shape))

model = nn.Linear(1, 1)
optimizer = optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    for xb, yb in loader:
        loss = F.mse_loss(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
print(f"{loss.item():.6f}")
"""
)

CHECKPOINTING = (
    HEADER
    + """
from torch.utils.checkpoint import checkpoint

torch.manual_seed(0)


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))

    def forward(self, x):
        return self.net(x)


class Model(nn.Module):
    def __init__(self, use_checkpoint):
        super().__init__()
        self.blocks = nn.ModuleList([Block(8) for _ in range(3)])
        self.use_checkpoint = use_checkpoint

    def forward(self, x):
        for block in self.blocks:
            if self.use_checkpoint:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x.sum()


plain = Model(False)
saved = Model(True)
saved.load_state_dict(plain.state_dict())
x = torch.randn(4, 8)
plain(x).backward()
saved(x).backward()
same = all(torch.allclose(a.grad, b.grad) for a, b in zip(plain.parameters(), saved.parameters()))
print("same gradients:", same)
"""
)

ACCUMULATION = (
    HEADER
    + """
torch.manual_seed(0)
model = nn.Linear(4, 1)
x = torch.randn(16, 4)
y = torch.randn(16, 1)
loss_fn = nn.MSELoss()

loss_fn(model(x), y).backward()
full = model.weight.grad.clone()
model.zero_grad()

accumulation_steps = 4
for i in range(accumulation_steps):
    xb = x[i * 4:(i + 1) * 4]
    yb = y[i * 4:(i + 1) * 4]
    loss = loss_fn(model(xb), yb) / accumulation_steps
    loss.backward()
print("accumulated equals full batch:", torch.allclose(model.weight.grad, full, atol=1e-6))
"""
)

JACOBIAN_HESSIAN = (
    HEADER
    + """
from torch.autograd.functional import jacobian, hessian


def f(x):
    return (x ** 3).sum()


def g(x):
    return torch.stack([x[0] * x[1], x[0] + 3 * x[1]])


x = torch.tensor([1.0, 2.0])
print(jacobian(f, x))
print(hessian(f, x))
print(jacobian(g, x))
"""
)

CUSTOM_FUNCTION = (
    HEADER
    + """
class MyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input < 0] = 0
        return grad_input


x = torch.tensor([-1.0, 2.0, -3.0, 4.0], requires_grad=True)
relu = MyReLU.apply
y = relu(x * 2)
loss = (y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum()
loss.backward()
print(y, x.grad)
"""
)

BLITZ_LOOP = (
    HEADER
    + """
from torch.utils.data import TensorDataset, DataLoader

torch.manual_seed(0)
inputs_all = torch.randn(24, 4)
labels_all = (inputs_all.sum(dim=1) > 0).long()
trainloader = DataLoader(TensorDataset(inputs_all, labels_all), batch_size=4, shuffle=True)

net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)

for epoch in range(2):  # loop over the dataset multiple times
    net.train()
    running_loss = 0.0
    for i, data in enumerate(trainloader, 0):
        # get the inputs; data is a list of [inputs, labels]
        inputs, labels = data
        optimizer.zero_grad()
        outputs = net(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        if i % 3 == 2:
            print('[%d, %5d] loss: %.3f' % (epoch + 1, i + 1, running_loss / 3))
            running_loss = 0.0

net.eval()
correct = 0
total = 0
with torch.no_grad():
    for data in trainloader:
        images, labels = data
        outputs = net(images)
        _, predicted = torch.max(outputs.data, 1)
        total += labels.size(0)
        correct += (predicted == labels).sum().item()
print('Accuracy of the network: {} %'.format(100 * correct // total))
print(f'Finished Training: {total} samples, {sum(p.numel() for p in net.parameters())} weights')
"""
)

TRANSFORM_CLASSES = (
    HEADER
    + """
from torch.utils.data import Dataset, DataLoader


class Rescale(object):
    \"\"\"Multiply the sample by a factor (a transform, as the data tutorial writes it).\"\"\"

    def __init__(self, factor):
        assert isinstance(factor, (int, float))
        self.factor = factor

    def __call__(self, sample):
        features, label = sample["features"], sample["label"]
        return {"features": features * self.factor, "label": label}


class Points(Dataset):
    def __init__(self, n, transform=None):
        self.features = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
        self.labels = torch.arange(n) % 2
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        sample = {"features": self.features[idx], "label": self.labels[idx]}
        if self.transform:
            sample = self.transform(sample)
        return sample


dataset = Points(6, transform=Rescale(0.5))
loader = DataLoader(dataset, batch_size=4)
for i_batch, sample_batched in enumerate(loader):
    print(i_batch, sample_batched["features"].size(), sample_batched["label"].tolist())
print(dataset[5])
"""
)

TUTORIALS = {
    "linear_regression": LINEAR_REGRESSION,
    "three_points": THREE_POINTS,
    "small_cnn": SMALL_CNN,
    "training_step": TRAINING_STEP,
    "optimizers": OPTIMIZERS,
    "cosine_schedule": COSINE_SCHEDULE,
    "fine_tuning": FINE_TUNING,
    "custom_dataset": CUSTOM_DATASET,
    "checkpointing": CHECKPOINTING,
    "accumulation": ACCUMULATION,
    "jacobian_hessian": JACOBIAN_HESSIAN,
    "custom_function": CUSTOM_FUNCTION,
    "blitz_loop": BLITZ_LOOP,
    "transform_classes": TRANSFORM_CLASSES,
}


def run_both(source: str) -> tuple[ProgramResult, str]:
    """The interpreted run, and what the same source prints as plain Python."""
    result = run_program(source)
    assert result.error is None, result.error.describe()
    printed = io.StringIO()
    with torch.random.fork_rng(), contextlib.redirect_stdout(printed):
        torch.manual_seed(0)  # as run_program does
        exec(compile(source, "<tutorial>", "exec"), {"__name__": "tutorial"})
    return result, printed.getvalue()


@pytest.mark.parametrize("name", list(TUTORIALS))
def test_tutorial_prints_what_plain_torch_prints(name: str) -> None:
    result, expected = run_both(TUTORIALS[name])
    assert result.output == expected


def _numbers(line: str) -> dict[str, float]:
    return {k: float(v) for k, v in (part.split("=") for part in line.split())}


def test_linear_regression_learns_the_line() -> None:
    result = run_program(LINEAR_REGRESSION)
    facts = _numbers(result.output.strip())
    assert abs(facts["w"] - 3) < 0.3 and abs(facts["b"] - 2) < 0.3
    assert abs(facts["at4"] - 14) < 1.0
    assert facts["last"] < facts["first"]
    assert result.graph is not None and result.backward_calls == 100
    ops = {d.get("op") for _, d in result.graph.nodes(data=True)}
    assert {"AddmmBackward0", "MseLossBackward0"} <= ops


def test_three_points_weight_goes_to_two() -> None:
    result = run_program(THREE_POINTS)
    first, shape = result.output.strip().splitlines()
    facts = _numbers(first)
    assert abs(facts["w"] - 2) < 0.05 and abs(facts["b"]) < 0.1
    assert shape == "(3, 1)"  # reduction="none" keeps one loss per point


def test_small_cnn_shapes_and_graph() -> None:
    result = run_program(SMALL_CNN)
    lines = result.output.splitlines()
    assert lines[0] == "10 torch.Size([6, 1, 3, 3])"
    assert lines[1] == "(1, 10)"
    assert lines[3] == "NllLossBackward0"
    assert result.graph is not None
    ops = [d.get("op") for _, d in result.graph.nodes(data=True)]
    assert ops.count("ConvolutionBackward0") == 2
    assert ops.count("MaxPool2DWithIndicesBackward0") == 2


def test_training_step_and_forgotten_zero_grad() -> None:
    result = run_program(TRAINING_STEP)
    assert result.output.splitlines() == ["doubled: True", "after zero_grad: True True"]


def test_every_optimizer_lowers_the_loss() -> None:
    result = run_program(OPTIMIZERS)
    x = torch.randn(16, 2)  # the starting loss of the same model, computed by torch
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x = torch.randn(16, 2)
        y = x @ torch.tensor([[1.5], [-2.0]]) + 0.5
        torch.manual_seed(1)
        start = torch.nn.functional.mse_loss(torch.nn.Linear(2, 1)(x), y).item()
    finals = {name: float(v) for name, v in (line.split() for line in result.output.splitlines())}
    assert len(finals) == 10
    assert all(final < start for final in finals.values()), (start, finals)


def test_cosine_schedule_matches_the_formula() -> None:
    import math

    result = run_program(COSINE_SCHEDULE)
    lrs = eval(result.output.splitlines()[1])  # a list of floats printed by the program
    expected = [round(0.05 * (1 + math.cos(math.pi * t / 10)), 6) for t in range(1, 11)]
    assert lrs == pytest.approx(expected, abs=1e-6)


def test_fine_tuning_only_the_new_head_learns() -> None:
    result = run_program(FINE_TUNING)
    rows = [line.split() for line in result.output.splitlines()]
    assert len(rows) == 6
    for name, requires, has_grad in rows:
        new = name.startswith("fc.")
        assert requires == str(new) and has_grad == str(new), name


def test_custom_dataset_and_loader() -> None:
    result = run_program(CUSTOM_DATASET)
    lines = result.output.splitlines()
    assert lines[0].startswith("10 (tensor([0.3000]), tensor([0.0900]))")
    assert lines[1] == "[4, 4, 2] [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
    assert lines[2] == "(4, 1) (4, 1)"


def test_checkpointing_gives_the_same_gradients() -> None:
    assert run_program(CHECKPOINTING).output == "same gradients: True\n"


def test_accumulation_equals_the_full_batch() -> None:
    assert run_program(ACCUMULATION).output == "accumulated equals full batch: True\n"


def test_jacobian_and_hessian_against_torch() -> None:
    result = run_program(JACOBIAN_HESSIAN)
    x = torch.tensor([1.0, 2.0])
    jac = torch.autograd.functional.jacobian(lambda t: (t**3).sum(), x)
    hes = torch.autograd.functional.hessian(lambda t: (t**3).sum(), x)
    assert result.output.startswith(f"{jac}\n{hes}\n")
    assert "tensor([[2., 1.],\n        [1., 3.]])" in result.output


def test_custom_function_backward_runs_and_is_captured() -> None:
    result = run_program(CUSTOM_FUNCTION)
    assert result.output.strip().endswith("tensor([0., 4., 0., 8.])")
    assert result.graph is not None
    ops = {d.get("op") for _, d in result.graph.nodes(data=True)}
    assert "MyReLUBackward" in ops


def test_blitz_loop_prints_running_loss_and_accuracy() -> None:
    lines = run_program(BLITZ_LOOP).output.splitlines()
    assert [line.split(" loss:")[0] for line in lines[:4]] == [
        "[1,     3]",
        "[1,     6]",
        "[2,     3]",
        "[2,     6]",
    ]
    accuracy = int(lines[4].split()[-2])
    assert 0 <= accuracy <= 100
    assert lines[5] == "Finished Training: 24 samples, 58 weights"


def test_transform_class_with_call() -> None:
    lines = run_program(TRANSFORM_CLASSES).output.splitlines()
    assert lines[:2] == ["0 torch.Size([4, 2]) [0, 1, 0, 1]", "1 torch.Size([2, 2]) [0, 1]"]
    assert lines[2] == "{'features': tensor([5.0000, 5.5000]), 'label': tensor(1)}"
