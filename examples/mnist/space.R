# Search space of the MNIST example (CANDLE Supervisor's convention: an R file defining param.set).
#   learning_rate: searched on a log scale, run() receives 10^x
#   dense: a list parameter, searched as discrete strings ("512 256" reaches run() as [512, 256])
#   epochs, batch_size: small whole numbers, so that one evaluation stays short
param.set <- makeParamSet(
  makeIntegerParam("epochs", lower = 1, upper = 5),
  makeDiscreteParam("batch_size", values = c(32, 64, 128, 256)),
  makeDiscreteParam("dense", values = c("512 256", "256", "512 512", "128 64")),
  makeDiscreteParam("activation", values = c("relu", "elu", "tanh", "sigmoid")),
  makeDiscreteParam("optimizer", values = c("rmsprop", "adam", "sgd", "adagrad")),
  makeNumericParam("learning_rate", lower = -4, upper = -1, trafo = function(x) 10^x),
  makeNumericParam("dropout", lower = 0, upper = 0.5)
)
