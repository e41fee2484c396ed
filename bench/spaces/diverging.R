# bench/models/diverging.py: lr is log10 of a learning rate; training diverges for lr > -1.2 + 0.6 width.
param.set <- makeParamSet(
  makeNumericParam("lr", lower = -5, upper = 0),
  makeNumericParam("width", lower = 0, upper = 1)
)
