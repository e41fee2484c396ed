# Search space of the digits example (CANDLE Supervisor's convention: an R file defining param.set).
#   learning_rate: searched on a log scale, run() receives 10^x
#   hidden: a list parameter, searched as discrete strings ("64 32" reaches run() as [64, 32])
#   dropout: only searched when the network has more than one hidden layer (requires=)
param.set <- makeParamSet(
  makeNumericParam("learning_rate", lower = -3.5, upper = -1, trafo = function(x) 10^x),
  makeDiscreteParam("hidden", values = c("32", "64", "128", "64 32", "128 64")),
  makeDiscreteParam("activation", values = c("relu", "tanh", "elu")),
  makeDiscreteParam("optimizer", values = c("adam", "sgd", "rmsprop")),
  makeDiscreteParam("batch_size", values = c(32, 64, 128)),
  makeLogicalParam("deep_dropout"),
  makeNumericParam("dropout", lower = 0, upper = 0.5, requires = quote(deep_dropout == TRUE))
)
