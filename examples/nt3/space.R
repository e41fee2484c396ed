# Search space of the NT3-like example (CANDLE Supervisor's convention: an R file defining param.set).
#   conv, dense, pool: list parameters, searched as discrete strings; "32 5 1 16 3 1" reaches run() as
#     [32, 5, 1, 16, 3, 1] (the benchmark declares them with nargs "+"): filters, kernel, stride per layer
#   learning_rate: searched on a log scale, run() receives 10^x
#   momentum: only meaningful (and only searched) for SGD (requires=)
# The initial design must show every level of a discrete parameter, so keep the lists short (at most
# --design-size values each).
param.set <- makeParamSet(
  makeDiscreteParam("conv", values = c("16 5 1 16 5 1", "32 5 1 16 3 1", "16 5 2 16 5 1", "8 9 1")),
  makeDiscreteParam("pool", values = c("2", "4", "2 4")),
  makeDiscreteParam("dense", values = c("64 16", "128", "32", "128 32")),
  makeDiscreteParam("activation", values = c("relu", "elu", "tanh")),
  makeDiscreteParam("optimizer", values = c("adam", "sgd", "rmsprop")),
  makeNumericParam("learning_rate", lower = -4, upper = -1.5, trafo = function(x) 10^x),
  makeNumericParam("momentum", lower = 0, upper = 0.95, requires = quote(optimizer == "sgd")),
  makeNumericParam("dropout", lower = 0, upper = 0.5),
  makeDiscreteParam("batch_size", values = c(16, 32, 64))
)
